//! Sentinel Logs Ingestion end to end: SiemDispatcher → sled queues → workers →
//! LogsIngestionAdapter → a local Entra ID token endpoint and a local DCR endpoint on
//! 127.0.0.1 (tests/src/entra.rs, tests/src/dcr.rs), which check the bearer token, gzip,
//! the 1,000,000-byte limit both ways and the array shape.

mod support;

use std::time::Duration;

use raxe_adapters::config::SiemConfig;
use raxe_adapters::event::ScanEvent;
use raxe_engine::{DestinationOptions, DestinationState};
use raxe_tests::dcr::{DcrFault, DcrReceiver, LIMIT};
use raxe_tests::entra::EntraReceiver;
use support::*;

const WAIT: Duration = Duration::from_secs(30);
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "0f0e0d0c-0b0a-0908-0706-050403020100";
const SECRET: &str = "Xy8Q~s3cr3t+/&=value";
const DCR: &str = "dcr-00112233445566778899aabbccddeeff";
const STREAM: &str = "Custom-RaxeEvents_CL";

struct Azure {
    entra: EntraReceiver,
    dcr: DcrReceiver,
}

async fn azure() -> Azure {
    let entra = EntraReceiver::start(TENANT, CLIENT, SECRET).await;
    let dcr = DcrReceiver::start(&entra, DCR, STREAM).await;
    Azure { entra, dcr }
}

fn config(az: &Azure, secret: &str) -> SiemConfig {
    let mut c =
        SiemConfig::sentinel_logs_ingestion(&az.dcr.url(), TENANT, CLIENT, DCR, STREAM, secret)
            .unwrap();
    if let raxe_adapters::SiemOptions::Sentinel(o) = &mut c.extra {
        o.token_url = Some(az.entra.token_url());
    }
    c.flush_interval_seconds = 0;
    c.timeout_seconds = 2;
    c
}

fn register(engine: &Engine, id: &str, config: SiemConfig, options: DestinationOptions) {
    let adapter = raxe_adapters::create_siem_adapter(config).unwrap();
    engine
        .dispatcher
        .register_destination(id, adapter.into(), None, options)
        .unwrap();
}

/// Events with `pad` bytes of poorly compressible text in pass-through fields.
fn padded(range: std::ops::Range<usize>, pad: usize) -> Vec<ScanEvent> {
    range
        .map(|n| {
            let mut seed = n as u64 + 1;
            let mut text = String::with_capacity(pad + 16);
            while text.len() < pad {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                text.push_str(&format!("{seed:016x}"));
            }
            // Fields of ≤ 30,000 bytes: records cap each value at 32 KiB.
            let fields: String = (0..text.len().div_ceil(30_000))
                .map(|i| {
                    let part = &text[i * 30_000..text.len().min((i + 1) * 30_000)];
                    format!(r#","notes_{i}":"{part}""#)
                })
                .collect();
            let line = format!(
                r#"{{"event_id":"evt-{n}","timestamp":"2026-01-30T10:30:00Z","severity":"high","customer_id":"c"{fields}}}"#
            );
            ScanEvent::parse_line(line.as_bytes(), n + 1).unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_once_with_one_cached_token() {
    let az = azure().await;
    let engine = Engine::new();
    register(
        &engine,
        "s",
        config(&az, SECRET),
        DestinationOptions::default(),
    );
    engine.dispatcher.start().unwrap();
    let batch = events("m", "c", 0..500);
    for chunk in batch.chunks(100) {
        engine.dispatch(chunk.to_vec()).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(
        az.dcr.wait_for(500, WAIT).await,
        "got {}",
        az.dcr.accepted_count()
    );
    assert!(engine.dispatcher.drain(WAIT).await);
    assert_eq!(az.dcr.accepted_count(), 500, "exactly once");
    assert_eq!(as_set(&az.dcr.accepted()), ids(&batch));
    assert!(az.dcr.requests() >= 5, "{} requests", az.dcr.requests());
    assert_eq!(az.entra.requests(), 1, "one token for every batch");
    assert_eq!(az.dcr.auth_failures(), 0);
    let record = &az.dcr.records()[0];
    assert_eq!(record["TimeGenerated"], "2026-01-30T10:30:00.000Z");
    assert_eq!(record["Severity"], "Critical");
    assert_eq!(record["CustomerId"], "c");
    assert_eq!(engine.dispatcher.stats().total.events_delivered, 500);
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_refreshed_before_expiry_and_once_on_a_401() {
    let az = azure().await;
    // expires_in 2 s: the adapter switches to a new token after half of it.
    az.entra.set_lifetime(Duration::from_secs(2));
    let engine = Engine::new();
    register(
        &engine,
        "s",
        config(&az, SECRET),
        DestinationOptions::default(),
    );
    engine.dispatcher.start().unwrap();
    engine.dispatch(events("m", "c", 0..50)).await;
    assert!(az.dcr.wait_for(50, WAIT).await);
    assert_eq!(az.entra.requests(), 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    engine.dispatch(events("m", "c", 50..100)).await;
    assert!(az.dcr.wait_for(100, WAIT).await);
    assert_eq!(az.entra.requests(), 2, "refreshed before it expired");
    assert_eq!(az.dcr.auth_failures(), 0, "never sent an expired token");

    // Revoked early (the DCR says 401): one refresh, one resend, nothing lost or doubled.
    az.entra.set_lifetime(Duration::from_secs(3600));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    engine.dispatch(events("m", "c", 100..150)).await;
    assert!(az.dcr.wait_for(150, WAIT).await);
    let before = az.entra.requests();
    az.entra.revoke_all();
    engine.dispatch(events("m", "c", 150..200)).await;
    assert!(az.dcr.wait_for(200, WAIT).await);
    assert_eq!(az.dcr.auth_failures(), 1);
    assert_eq!(
        az.entra.requests(),
        before + 1,
        "exactly one refresh for the 401"
    );
    assert_eq!(az.dcr.accepted_count(), 200);
    assert_eq!(engine.dispatcher.state("s").unwrap(), DestinationState::Ok);
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_batches_are_split_to_one_megabyte() {
    let az = azure().await;
    let engine = Engine::new();
    let mut c = config(&az, SECRET);
    c.batch_size = 400;
    let options = DestinationOptions {
        max_batch_bytes: 20_000_000,
        ..DestinationOptions::default()
    };
    register(&engine, "s", c, options);
    // 400 events of ~20 KB: ~8 MB per lease.
    let batch = padded(0..400, 20_000);
    engine.dispatch(batch.clone()).await;
    engine.dispatcher.start().unwrap();
    assert!(
        az.dcr.wait_for(400, WAIT).await,
        "got {}",
        az.dcr.accepted_count()
    );
    assert_eq!(as_set(&az.dcr.accepted()), ids(&batch));
    assert_eq!(az.dcr.accepted_count(), 400);
    let (compressed, uncompressed) = az.dcr.max_sizes();
    assert!(compressed <= LIMIT && uncompressed <= LIMIT);
    assert!(
        uncompressed > LIMIT * 9 / 10,
        "requests are packed: {uncompressed}"
    );
    assert_eq!(az.dcr.too_large(), 0, "never sent anything over the limit");
    assert!(az.dcr.requests() >= 8);
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_413_splits_and_resends_and_a_huge_event_is_dead_lettered() {
    let az = azure().await;
    // The service is stricter than our 1 MB (a proxy in front, say): 413 → halves.
    az.dcr.set_limit(60_000);
    let engine = Engine::new();
    register(
        &engine,
        "s",
        config(&az, SECRET),
        DestinationOptions {
            max_batch_bytes: 20_000_000,
            ..DestinationOptions::default()
        },
    );
    let mut batch = padded(0..20, 10_000);
    // Over 1,000,000 bytes as a record (input events are capped at 1 MiB).
    batch.insert(7, padded(1000..1001, 1_020_000).remove(0));
    engine.dispatch(batch.clone()).await;
    engine.dispatcher.start().unwrap();
    assert!(engine.dispatcher.drain(WAIT).await);
    assert!(az.dcr.too_large() >= 1, "the receiver did refuse");
    assert_eq!(az.dcr.accepted_count(), 20);
    assert!(!az.dcr.accepted().contains(&"evt-1000".to_string()));
    let letters = raxe_engine::dead_letter::ops::list(engine.store(), "s", 10).unwrap();
    assert_eq!(letters.len(), 1, "only the huge event");
    let reason = &letters[0].header.reason;
    assert!(
        reason.contains("Logs Ingestion limit of 1000000 bytes"),
        "{reason}"
    );
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_secret_stops_the_destination_and_keeps_the_events() {
    let az = azure().await;
    let engine = Engine::new();
    register(
        &engine,
        "s",
        config(&az, "wrong-secret"),
        DestinationOptions::default(),
    );
    engine.dispatcher.start().unwrap();
    engine.dispatch(events("m", "c", 0..30)).await;
    let stopped = wait_until(WAIT, || engine.dispatcher.state("s").unwrap().is_stopped()).await;
    assert!(stopped);
    let DestinationState::AuthFailed(reason) = engine.dispatcher.state("s").unwrap() else {
        panic!("{:?}", engine.dispatcher.state("s"));
    };
    assert!(reason.contains("Entra ID token request failed"), "{reason}");
    assert!(reason.contains("invalid_client"), "{reason}");
    assert!(!reason.contains("wrong-secret") && !reason.contains(SECRET));
    assert_eq!(az.dcr.requests(), 0, "nothing sent without a token");
    assert_eq!(engine.dispatcher.stats().queued(), 30, "nothing lost");
    register(
        &engine,
        "s",
        config(&az, SECRET),
        DestinationOptions::default(),
    );
    assert!(az.dcr.wait_for(30, WAIT).await);
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_and_throttled_retry_and_say_why() {
    let az = azure().await;
    az.dcr.push_fault(DcrFault::status(403));
    az.dcr.push_fault(DcrFault {
        status: 429,
        retry_after: Some(1),
    });
    let engine = Engine::new();
    let mut c = config(&az, SECRET);
    c.retry_count = 0; // halt after each failure, so the reason is visible in stats
    register(&engine, "s", c, DestinationOptions::default());
    engine.dispatcher.start().unwrap();
    engine.dispatch(events("m", "c", 0..20)).await;
    let said = wait_until(WAIT, || {
        engine.dispatcher.stats().destinations[0]
            .marks
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("Monitoring Metrics Publisher"))
    })
    .await;
    assert!(
        said,
        "{:?}",
        engine.dispatcher.stats().destinations[0].marks
    );
    assert!(az.dcr.wait_for(20, WAIT).await);
    assert_eq!(az.dcr.accepted_count(), 20);
    assert_eq!(engine.dispatcher.stats().total.dead_lettered, 0);
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

/// A token endpoint (a proxy, a mock) that names an absurd lifetime: believed up to 24 h,
/// no overflow, delivery goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_token_lifetime_is_capped() {
    let az = azure().await;
    az.entra
        .set_lifetime(Duration::from_secs(10_000_000_000_000_000_000));
    let engine = Engine::new();
    register(
        &engine,
        "s",
        config(&az, SECRET),
        DestinationOptions::default(),
    );
    engine.dispatcher.start().unwrap();
    engine.dispatch(events("m", "c", 0..50)).await;
    assert!(
        az.dcr.wait_for(50, WAIT).await,
        "got {}",
        az.dcr.accepted_count()
    );
    engine.dispatch(events("m", "c", 50..100)).await;
    assert!(az.dcr.wait_for(100, WAIT).await);
    assert_eq!(az.entra.requests(), 1);
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

/// A stream that refuses everything (renamed or redeclared by an admin) stops the
/// destination as misconfigured: its events stay queued, none is dead-lettered; fixed, they
/// all arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_refuses_everything_is_a_configuration_error_not_dead_letters() {
    let az = azure().await;
    az.dcr.set_refuse_all(true);
    let engine = Engine::new();
    register(
        &engine,
        "s",
        config(&az, SECRET),
        DestinationOptions::default(),
    );
    engine.dispatcher.start().unwrap();
    let batch = events("m", "c", 0..40);
    engine.dispatch(batch.clone()).await;
    let stopped = wait_until(WAIT, || engine.dispatcher.state("s").unwrap().is_stopped()).await;
    assert!(stopped, "{:?}", engine.dispatcher.state("s"));
    let DestinationState::Misconfigured(reason) = engine.dispatcher.state("s").unwrap() else {
        panic!("{:?}", engine.dispatcher.state("s"));
    };
    assert!(reason.contains("empty array is refused too"), "{reason}");
    let stats = engine.dispatcher.stats();
    assert_eq!(stats.total.dead_lettered, 0);
    assert_eq!(stats.queued(), 40, "nothing lost");
    az.dcr.set_refuse_all(false);
    register(
        &engine,
        "s",
        config(&az, SECRET),
        DestinationOptions::default(),
    );
    assert!(az.dcr.wait_for(40, WAIT).await);
    assert_eq!(as_set(&az.dcr.accepted()), ids(&batch));
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}
