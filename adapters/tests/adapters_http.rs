//! One round trip per destination through `create_siem_adapter` + `send_event`, against
//! real hyper servers on 127.0.0.1 that parse and verify what they get (the Sentinel
//! receiver recomputes the SharedKey HMAC like Azure and answers 403 on a mismatch),
//! plus CEF over syslog TCP and UDP.

use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use raxe_adapters::config::{CefOptions, CefTransport, SiemConfig};
use raxe_adapters::create_siem_adapter;
use raxe_adapters::event::ScanEvent;
use raxe_adapters::outcome::{Outcome, RejectedEvents};
use serde_json::Value;
use sha2::Sha256;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
struct Got {
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

type Verdict = (u16, String);

/// Serves until the test ends; `check` decides the answer for each request.
async fn server(
    check: impl Fn(&Got) -> Verdict + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Got>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let check = Arc::new(check);
    let seen2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let check = check.clone();
            let seen = seen2.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let check = check.clone();
                    let seen = seen.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.unwrap().to_bytes().to_vec();
                        let got = Got {
                            path: parts
                                .uri
                                .path_and_query()
                                .map(|p| p.to_string())
                                .unwrap_or_default(),
                            headers: parts.headers,
                            body,
                        };
                        let (status, text) = check(&got);
                        seen.lock().unwrap().push(got);
                        Ok::<_, Infallible>(
                            http::Response::builder()
                                .status(StatusCode::from_u16(status).unwrap())
                                .body(Full::new(Bytes::from(text)))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}

fn sample(n: usize) -> ScanEvent {
    let line = format!(
        r#"{{"event_id":"evt-{n}","timestamp":"2026-01-30T10:30:00.123Z","threat_detected":true,"severity":"high","rule_ids":["pi-001"],"families":["PI"],"prompt_hash":"sha256:ab","customer_id":"cust_acme","agent_id":"agent-1","installation_id":"inst-1","note":"José"}}"#
    );
    ScanEvent::parse_line(line.as_bytes(), 1).unwrap()
}

fn header<'a>(g: &'a Got, name: &str) -> &'a str {
    g.headers
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or_default()
}

fn body_text(g: &Got) -> Vec<u8> {
    if header(g, "content-encoding") == "gzip" {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&g.body[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        g.body.clone()
    }
}

/// A Splunk-like receiver: checks the token, parses the envelopes, rejects an event
/// whose id is `evt-bad` with code 6 and its position.
fn hec_check(auth: &'static str) -> impl Fn(&Got) -> Verdict + Send + Sync {
    move |g| {
        if header(g, "authorization") != auth {
            return (401, r#"{"text":"Invalid authorization","code":3}"#.into());
        }
        let body = body_text(g);
        for (i, env) in serde_json::Deserializer::from_slice(&body)
            .into_iter::<Value>()
            .enumerate()
        {
            let Ok(env) = env else {
                return (400, r#"{"text":"Invalid data format","code":6}"#.into());
            };
            if env["event"]["event_id"] == "evt-bad" || env["time"].as_f64().is_none() {
                return (
                    400,
                    format!(
                        r#"{{"text":"Invalid data format","code":6,"invalid-event-number":{i}}}"#
                    ),
                );
            }
        }
        (200, r#"{"text":"Success","code":0}"#.into())
    }
}

#[tokio::test]
async fn splunk_round_trip() {
    let (url, seen) = server(hec_check("Splunk hec-token")).await;
    let adapter = create_siem_adapter(SiemConfig::splunk(&url, "hec-token").unwrap()).unwrap();
    assert_eq!(adapter.send_event(&sample(1)).await, Outcome::Delivered);
    let got = seen.lock().unwrap()[0].clone();
    assert_eq!(got.path, "/services/collector/event");
    assert_eq!(header(&got, "content-encoding"), "gzip");
    let env: Value = serde_json::from_slice(&body_text(&got)).unwrap();
    assert_eq!(env["event"]["event_id"], "evt-1");
    assert_eq!(env["event"]["note"], "José");
    assert_eq!(env["time"], 1769769000.123);

    // A poisoned event in a batch: the receiver names it.
    let batch = vec![sample(1), sample(2), {
        let mut e = sample(3);
        e.event_id = "evt-bad".into();
        e
    }];
    let encoded = adapter.encode(&batch);
    let req = &encoded.requests[0];
    let answer = adapter.send(req).await;
    match adapter.classify(req, &answer) {
        Outcome::Rejected { events, .. } => assert_eq!(events, RejectedEvents::FirstBad(2)),
        other => panic!("{other:?}"),
    }

    // Wrong token → auth failure.
    let adapter = create_siem_adapter(SiemConfig::splunk(&url, "other").unwrap()).unwrap();
    assert!(matches!(
        adapter.send_event(&sample(1)).await,
        Outcome::AuthFailed { .. }
    ));
}

#[tokio::test]
async fn logscale_round_trip() {
    let (url, seen) = server(hec_check("Bearer ingest-token")).await;
    let adapter =
        create_siem_adapter(SiemConfig::crowdstrike(&url, "ingest-token").unwrap()).unwrap();
    assert_eq!(adapter.send_event(&sample(1)).await, Outcome::Delivered);
    assert_eq!(seen.lock().unwrap()[0].path, "/api/v1/ingest/hec");
}

const WS: &str = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// Verifies the SharedKey signature the way Azure does.
fn azure_check(g: &Got) -> Verdict {
    let date = header(g, "x-ms-date");
    let sts = format!(
        "POST\n{}\napplication/json\nx-ms-date:{date}\n/api/logs",
        g.body.len()
    );
    let key = base64::engine::general_purpose::STANDARD
        .decode(KEY)
        .unwrap();
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).unwrap();
    mac.update(sts.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    if header(g, "authorization") != format!("SharedKey {WS}:{sig}") {
        return (403, r#"{"Error":"InvalidAuthorization"}"#.into());
    }
    if header(g, "content-type") != "application/json"
        || header(g, "log-type") != "RaxeEvents"
        || header(g, "time-generated-field") != "EventTime"
        || g.path != "/api/logs?api-version=2016-04-01"
    {
        return (400, r#"{"Error":"MissingLogType"}"#.into());
    }
    match serde_json::from_slice::<Vec<serde_json::Map<String, Value>>>(&g.body) {
        Ok(records) if records.iter().all(|r| !r.contains_key("TimeGenerated")) => {
            (200, String::new())
        }
        _ => (400, r#"{"Error":"InvalidDataFormat"}"#.into()),
    }
}

#[tokio::test]
async fn sentinel_round_trip_with_hmac_verification() {
    let (url, seen) = server(azure_check).await;
    let adapter =
        create_siem_adapter(SiemConfig::sentinel(&url, WS, "RaxeEvents", KEY).unwrap()).unwrap();
    // Non-ASCII body: the signed length must be in bytes.
    assert_eq!(adapter.send_event(&sample(1)).await, Outcome::Delivered);
    let got = seen.lock().unwrap()[0].clone();
    let records: Vec<Value> = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(records[0]["EventId"], "evt-1");
    assert_eq!(records[0]["Severity"], "High");
    assert_eq!(records[0]["Note"], "José");

    // A different (valid base64) key → 403 → AuthFailed.
    let wrong = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let adapter =
        create_siem_adapter(SiemConfig::sentinel(&url, WS, "RaxeEvents", wrong).unwrap()).unwrap();
    assert!(matches!(
        adapter.send_event(&sample(1)).await,
        Outcome::AuthFailed { .. }
    ));
}

fn cef_check(
    extra: Option<(&'static str, &'static str)>,
) -> impl Fn(&Got) -> Verdict + Send + Sync {
    move |g| {
        if header(g, "authorization") != "Bearer cef-token" {
            return (401, String::new());
        }
        if let Some((name, value)) = extra {
            if header(g, name) != value {
                return (400, "missing connector".into());
            }
        }
        let text = String::from_utf8(g.body.clone()).unwrap();
        if text
            .lines()
            .all(|l| l.starts_with("CEF:0|RAXE|ThreatDetection|"))
        {
            (200, String::new())
        } else {
            (400, "bad CEF".into())
        }
    }
}

#[tokio::test]
async fn arcsight_round_trip() {
    let (url, seen) = server(cef_check(Some(("x-arcsight-smart-connector-id", "conn-9")))).await;
    let adapter =
        create_siem_adapter(SiemConfig::arcsight(&url, "conn-9", "cef-token").unwrap()).unwrap();
    assert_eq!(adapter.send_event(&sample(1)).await, Outcome::Delivered);
    let body = String::from_utf8(seen.lock().unwrap()[0].body.clone()).unwrap();
    assert!(
        body.contains("|pi-001|Prompt Injection Detected|7|"),
        "{body}"
    );
    assert!(body.ends_with('\n'));
}

#[tokio::test]
async fn cef_http_round_trip() {
    let (url, _) = server(cef_check(None)).await;
    let adapter = create_siem_adapter(
        SiemConfig::cef(&format!("{url}/cef"), "cef-token", CefOptions::default()).unwrap(),
    )
    .unwrap();
    assert_eq!(adapter.send_event(&sample(1)).await, Outcome::Delivered);
}

#[tokio::test]
async fn cef_syslog_tcp_octet_counted() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let reader = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        // Read until one full octet-counted frame has arrived.
        loop {
            let n = tcp.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
            if let Some(sp) = buf.iter().position(|&b| b == b' ') {
                let len: usize = std::str::from_utf8(&buf[..sp]).unwrap().parse().unwrap();
                if buf.len() >= sp + 1 + len {
                    return String::from_utf8(buf[sp + 1..sp + 1 + len].to_vec()).unwrap();
                }
            }
            assert!(n > 0, "closed early");
        }
    });
    let config = SiemConfig::cef(
        "syslog://127.0.0.1",
        "",
        CefOptions {
            transport: Some(CefTransport::Tcp),
            port: Some(port),
            hostname: Some("agent-host".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let adapter = create_siem_adapter(config).unwrap();
    assert_eq!(adapter.send_event(&sample(1)).await, Outcome::Delivered);
    let msg = reader.await.unwrap();
    // local0 * 8 + error (high) = 131.
    assert!(
        msg.starts_with("<131>1 2026-01-30T10:30:00.123Z agent-host raxe - - - CEF:0|RAXE|"),
        "{msg}"
    );
}

#[tokio::test]
async fn cef_syslog_udp() {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = socket.local_addr().unwrap().port();
    let config = SiemConfig::cef(
        &format!("syslog://127.0.0.1:{port}"),
        "",
        CefOptions::default(),
    )
    .unwrap();
    let adapter = create_siem_adapter(config).unwrap();
    assert_eq!(adapter.send_event(&sample(1)).await, Outcome::Delivered);
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).await.unwrap();
    let msg = std::str::from_utf8(&buf[..n]).unwrap();
    assert!(msg.starts_with("<131>1 "), "{msg}");
    assert!(msg.contains(" CEF:0|RAXE|ThreatDetection|"));
}
