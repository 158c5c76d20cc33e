//! Encoding throughput per destination: batches of 100 realistic (~350-400 byte) events,
//! gzip on and off where it applies, from queue records as a delivery worker gets them
//! (decoded only as far as the destination needs). Pure CPU: no network, no runtime.
//!
//! `cargo run --release -p raxe-benches --bin encode_bench [seconds per case] [only cases
//! whose name contains this]` (the filter makes a profile of one case easy to read)

use std::time::{Duration, Instant};

use raxe_adapters::adapter::SiemAdapter;
use raxe_adapters::config::{
    CefOptions, CefTransport, Compression, CrowdstrikeOptions, SiemConfig, SiemOptions,
    SplunkOptions, SyslogFormat,
};
use raxe_adapters::create_siem_adapter;
use raxe_adapters::event::{JsonEvent, ScanEvent};
use raxe_adapters::request::Payload;

const BATCH: usize = 100;

/// splitmix64: a cheap source of realistic-looking (incompressible) hashes and ids.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// One agent line as agents write it (~400 bytes).
fn line(n: usize) -> String {
    let h = |k: u64| mix(n as u64 * 4 + k);
    let threat = matches!(n % 3, 1 | 2);
    format!(
        r#"{{"event_id":"evt-{:016x}","timestamp":"2026-01-30T10:30:{:02}.{:03}Z","event_type":"scan","threat_detected":{threat},"severity":"{}","rule_ids":["pi-{:03}","pi-{:03}"],"families":["PI"],"prompt_hash":"sha256:{:016x}{:016x}{:016x}{:016x}","prompt_length":{},"detection_count":2,"scan_duration_ms":{}.{},"customer_id":"cust_acme","agent_id":"agent_{:06}","installation_id":"inst_{:08x}"}}"#,
        h(0),
        n % 60,
        n % 1000,
        ["none", "low", "medium", "high", "critical"][n % 5],
        n % 1000,
        (n * 7) % 1000,
        h(2),
        h(3),
        mix(h(2)),
        mix(h(3)),
        100 + n % 900,
        n % 50,
        n % 10,
        n % 1000,
        h(0) as u32,
    )
}

fn sample(n: usize) -> ScanEvent {
    ScanEvent::parse_line(line(n).as_bytes(), n + 1).expect("sample event")
}

struct Result {
    events_per_s: f64,
    out_mb_per_s: f64,
    wire_ratio: f64,
}

/// What a delivery worker does per lease: decode the queue records as far as the adapter
/// needs (HEC: not at all), then encode.
fn run(adapter: &dyn SiemAdapter, records: &[bytes::Bytes], budget: Duration) -> Result {
    let start = Instant::now();
    let (mut events, mut uncompressed, mut wire) = (0usize, 0usize, 0usize);
    while start.elapsed() < budget {
        for _ in 0..10 {
            let encoded = if adapter.embeds_json() {
                let batch: Vec<JsonEvent> = records
                    .iter()
                    .map(|r| JsonEvent::from_record(r.clone()).unwrap())
                    .collect();
                adapter.encode_json(&batch)
            } else {
                let batch: Vec<ScanEvent> = records
                    .iter()
                    .map(|r| ScanEvent::from_queue_bytes(r).unwrap())
                    .collect();
                adapter.encode(&batch)
            };
            for r in &encoded.requests {
                match &r.payload {
                    Payload::Http(h) => {
                        uncompressed += h.uncompressed_len;
                        wire += h.body.len();
                    }
                    Payload::Syslog(m) => {
                        let n: usize = m.iter().map(|m| m.len()).sum();
                        uncompressed += n;
                        wire += n;
                    }
                }
            }
            events += records.len();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Result {
        events_per_s: events as f64 / secs,
        out_mb_per_s: uncompressed as f64 / secs / 1e6,
        wire_ratio: wire as f64 / uncompressed.max(1) as f64,
    }
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.5);
    let budget = Duration::from_secs_f64(secs);
    let filter = std::env::args().nth(2).unwrap_or_default();
    let batch: Vec<ScanEvent> = (0..BATCH).map(sample).collect();
    let records: Vec<bytes::Bytes> = batch.iter().map(|e| e.to_queue_bytes().into()).collect();
    let avg_in: usize = (0..BATCH).map(|n| line(n).len()).sum::<usize>() / BATCH;
    println!("encode_bench: batches of {BATCH} events, ~{avg_in} bytes each (agent JSON), {secs}s per case");

    let splunk = |c: Compression| {
        SiemConfig::with_options(
            "https://splunk.example.com:8088",
            "12345678-1234-1234-1234-1234567890AB",
            SiemOptions::Splunk(SplunkOptions {
                compression: c,
                host: Some("bench-host".into()),
                index: Some("security".into()),
                ..Default::default()
            }),
        )
        .unwrap()
    };
    let logscale = |c: Compression| {
        SiemConfig::with_options(
            "https://cloud.humio.com",
            "token",
            SiemOptions::Crowdstrike(CrowdstrikeOptions {
                compression: c,
                host: Some("bench-host".into()),
                ..Default::default()
            }),
        )
        .unwrap()
    };
    let syslog = |f: SyslogFormat| {
        SiemConfig::cef(
            "syslog://127.0.0.1",
            "",
            CefOptions {
                transport: Some(CefTransport::Tcp),
                syslog_format: f,
                hostname: Some("bench-host".into()),
                ..Default::default()
            },
        )
        .unwrap()
    };
    let cases: Vec<(&str, SiemConfig)> = vec![
        ("splunk hec, gzip", splunk(Compression::Gzip)),
        ("splunk hec, no gzip", splunk(Compression::None)),
        ("logscale hec, gzip", logscale(Compression::Gzip)),
        ("logscale hec, no gzip", logscale(Compression::None)),
        (
            "sentinel data collector",
            SiemConfig::sentinel(
                "https://ws.ods.opinsights.azure.com",
                "3f2504e0-4f89-41d3-9a0c-0305e82c3301",
                "RaxeEvents",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            )
            .unwrap(),
        ),
        (
            "arcsight cef/http",
            SiemConfig::arcsight("https://arcsight:8443/", "conn-1", "t").unwrap(),
        ),
        (
            "cef http",
            SiemConfig::cef("https://collector/cef", "t", CefOptions::default()).unwrap(),
        ),
        ("cef syslog rfc5424", syslog(SyslogFormat::Rfc5424)),
        ("cef syslog rfc3164", syslog(SyslogFormat::Rfc3164)),
    ];
    println!(
        "{:<26} {:>12} {:>10} {:>10}",
        "destination", "events/s", "MB/s out", "wire/out"
    );
    for (name, config) in cases {
        if !name.contains(filter.as_str()) {
            continue;
        }
        let adapter = create_siem_adapter(config).expect("adapter");
        let r = run(adapter.as_ref(), &records, budget);
        println!(
            "{name:<26} {:>12.0} {:>10.1} {:>10.3}",
            r.events_per_s, r.out_mb_per_s, r.wire_ratio
        );
    }

    // Queue encoding and agent-line parsing (per event).
    let lines: Vec<String> = (0..BATCH).map(line).collect();
    let queued: Vec<Vec<u8>> = batch.iter().map(ScanEvent::to_queue_bytes).collect();
    let per = |label: &str, bytes: usize, f: &mut dyn FnMut()| {
        if !label.contains(filter.as_str()) {
            return;
        }
        let start = Instant::now();
        let mut n = 0usize;
        while start.elapsed() < budget {
            f();
            n += BATCH;
        }
        let s = start.elapsed().as_secs_f64();
        println!(
            "{label:<26} {:>12.0} {:>10.1}",
            n as f64 / s,
            (n / BATCH * bytes) as f64 / s / 1e6
        );
    };
    let line_bytes: usize = lines.iter().map(String::len).sum();
    let queue_bytes: usize = queued.iter().map(Vec::len).sum();
    per("parse_line (agent JSON)", line_bytes, &mut || {
        for (i, l) in lines.iter().enumerate() {
            std::hint::black_box(ScanEvent::parse_line(l.as_bytes(), i).unwrap());
        }
    });
    per("encode_line (JSON->record)", line_bytes, &mut || {
        for (i, l) in lines.iter().enumerate() {
            std::hint::black_box(ScanEvent::encode_line(l.as_bytes(), i).unwrap());
        }
    });
    per("to_queue_bytes", queue_bytes, &mut || {
        for e in &batch {
            std::hint::black_box(e.to_queue_bytes());
        }
    });
    per("from_queue_bytes", queue_bytes, &mut || {
        for q in &queued {
            std::hint::black_box(ScanEvent::from_queue_bytes(q).unwrap());
        }
    });
    // Records queued by earlier versions (v1: short keys, integer time).
    let old: Vec<Vec<u8>> = batch
        .iter()
        .map(raxe_adapters::event::to_v1_queue_bytes)
        .collect();
    let old_bytes: usize = old.iter().map(Vec::len).sum();
    per("from_queue_bytes (v1)", old_bytes, &mut || {
        for q in &old {
            std::hint::black_box(ScanEvent::from_queue_bytes(q).unwrap());
        }
    });
    println!(
        "record bytes per event: v2 {:.0}, v1 {:.0}",
        queue_bytes as f64 / BATCH as f64,
        old_bytes as f64 / BATCH as f64
    );
}
