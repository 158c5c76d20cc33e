//! The machine's limits, measured in the same run so every figure reads as a ratio: raw
//! append+fdatasync batches per second on the data directory's filesystem, and the
//! receiver's own ceiling (a loopback hyper client posting pre-built gzip HEC bodies of
//! 100 events to a counting receiver, like `raxe serve` does).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::feed::event_line;
use super::receiver::{HttpKind, HttpReceiver, Tally, HEC_TOKEN};

/// Appends `batch` events' worth of bytes and fdatasyncs, for `secs`. Returns batches/s.
pub fn fdatasync_rate(dir: &Path, batch: usize, secs: f64) -> std::io::Result<f64> {
    let path = dir.join(format!("fsync-probe-{batch}"));
    let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
    let mut buf = String::new();
    for seq in 0..batch {
        event_line(&mut buf, seq, 1);
        buf.push('\n');
    }
    let started = Instant::now();
    let mut n = 0u64;
    while n < 5 || started.elapsed().as_secs_f64() < secs {
        f.write_all(buf.as_bytes())?;
        f.sync_data()?;
        n += 1;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(&path);
    Ok(rate)
}

/// HEC bodies as the splunk adapter sends them: envelopes around each event, gzip.
fn hec_bodies(count: usize, per_body: usize) -> Vec<Bytes> {
    (0..count)
        .map(|b| {
            let mut text = String::new();
            let mut line = String::new();
            for seq in b * per_body..(b + 1) * per_body {
                line.clear();
                event_line(&mut line, seq, 1);
                text.push_str(r#"{"time":1769769000.123,"host":"bench","source":"raxe","sourcetype":"_json","event":"#);
                text.push_str(&line);
                text.push_str("}\n");
            }
            let mut gz =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            let _ = gz.write_all(text.as_bytes());
            Bytes::from(gz.finish().unwrap_or_default())
        })
        .collect()
}

pub struct Ceiling {
    pub requests_per_s: f64,
    pub events_per_s: f64,
}

/// Posts pre-built bodies over `connections` keep-alive connections for `secs`.
pub async fn receiver_ceiling(connections: usize, secs: f64) -> Result<Ceiling, String> {
    const PER_BODY: usize = 100;
    const BODIES: usize = 200;
    let tally = Tally::new(PER_BODY * BODIES, PER_BODY * BODIES);
    let rx = HttpReceiver::start(HttpKind::Hec, tally.clone())
        .await
        .map_err(|e| e.to_string())?;
    let bodies = Arc::new(hec_bodies(BODIES, PER_BODY));
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let url: http::Uri = rx.url().parse().map_err(|e| format!("{e}"))?;
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let (client, bodies, url) = (client.clone(), bodies.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut sent = 0u64;
            let mut i = c;
            while Instant::now() < deadline {
                let req = http::Request::post(url.clone())
                    .header("authorization", format!("Splunk {HEC_TOKEN}"))
                    .header("content-type", "application/json")
                    .header("content-encoding", "gzip")
                    .body(Full::new(bodies[i % bodies.len()].clone()))
                    .map_err(|e| e.to_string())?;
                let resp = client.request(req).await.map_err(|e| e.to_string())?;
                if !resp.status().is_success() {
                    return Err(format!("receiver answered {}", resp.status()));
                }
                let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
                sent += 1;
                i += connections;
            }
            Ok::<u64, String>(sent)
        }));
    }
    let mut sent = 0;
    for t in tasks {
        sent += t.await.map_err(|e| e.to_string())??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let counted = tally.received() as f64;
    if counted < (sent * PER_BODY as u64) as f64 {
        return Err(format!(
            "ceiling: receiver counted {counted} events of {}",
            sent * PER_BODY as u64
        ));
    }
    Ok(Ceiling {
        requests_per_s: sent as f64 / elapsed,
        events_per_s: counted / elapsed,
    })
}
