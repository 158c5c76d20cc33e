use std::time::Duration;

use super::*;
use crate::config::{SiemConfig, SplunkOptions};
use crate::outcome::RejectedEvents;
use crate::request::HttpRequest;
use crate::test_support::{clean_event, event, gunzip, resp, resp_with};

fn splunk(compression: Compression, max: usize) -> HecAdapter {
    let config = SiemConfig::with_options(
        "https://splunk.example.com:8088",
        "12345678-1234-1234-1234-1234567890AB",
        SiemOptions::Splunk(SplunkOptions {
            index: Some("security".into()),
            host: Some("raxe-agent-01".into()),
            compression,
            max_request_bytes: max,
            ..Default::default()
        }),
    )
    .unwrap();
    HecAdapter::new(config).unwrap()
}

fn http(r: &EncodedRequest) -> &HttpRequest {
    match &r.payload {
        Payload::Http(h) => h,
        _ => panic!("not http"),
    }
}

const ENV_1: &str = r#"{"time":1769769000.123,"host":"raxe-agent-01","source":"raxe","sourcetype":"_json","index":"security","event":{"event_id":"evt-1","timestamp":"2026-01-30T10:30:00.123Z","event_type":"scan","threat_detected":true,"severity":"critical","rule_ids":["pi-001","pi-003"],"families":["PI"],"prompt_hash":"sha256:abc123","prompt_length":42,"detection_count":2,"scan_duration_ms":4.5,"customer_id":"cust_acme","mssp_id":"mssp_1","agent_id":"agent_prod_001","installation_id":"inst_abc123","model":"gpt-x"}}"#;
const ENV_CLEAN: &str = r#"{"time":1751371200,"host":"raxe-agent-01","source":"raxe","sourcetype":"_json","index":"security","event":{"event_id":"evt-clean","timestamp":"2025-07-01T12:00:00.000Z","event_type":"scan","threat_detected":false,"customer_id":"cust_acme"}}"#;

#[test]
fn golden_uncompressed() {
    let a = splunk(Compression::None, 1_000_000);
    let batch = a.encode(&[event(1), clean_event()]);
    assert!(batch.oversized.is_empty());
    assert_eq!(batch.requests.len(), 1);
    let r = &batch.requests[0];
    assert_eq!(r.events, 0..2);
    let h = http(r);
    assert_eq!(h.method, http::Method::POST);
    assert_eq!(
        h.uri.to_string(),
        "https://splunk.example.com:8088/services/collector/event"
    );
    assert_eq!(
        h.headers["authorization"],
        "Splunk 12345678-1234-1234-1234-1234567890AB"
    );
    assert!(h.headers["authorization"].is_sensitive());
    assert_eq!(h.headers["content-type"], "application/json");
    assert!(h.headers.get("content-encoding").is_none());
    assert_eq!(h.headers.len(), 2);
    let expected = format!("{ENV_1}\n{ENV_CLEAN}\n");
    assert_eq!(std::str::from_utf8(&h.body).unwrap(), expected);
    assert_eq!(h.uncompressed_len, expected.len());
    assert_eq!(
        a.transform_event(&event(1)),
        format!("{ENV_1}\n").into_bytes()
    );
}

#[test]
fn golden_gzip_round_trip() {
    let a = splunk(Compression::Gzip, 1_000_000);
    let batch = a.encode(&[event(1), clean_event()]);
    let h = http(&batch.requests[0]);
    assert_eq!(h.headers["content-encoding"], "gzip");
    let expected = format!("{ENV_1}\n{ENV_CLEAN}\n");
    assert_eq!(gunzip(&h.body), expected.as_bytes());
    assert_eq!(h.uncompressed_len, expected.len());
}

#[test]
fn hec_time_format() {
    assert_eq!(hec_time(1_751_371_200_123), "1751371200.123");
    assert_eq!(hec_time(1_751_371_200_000), "1751371200");
    assert_eq!(hec_time(1_751_371_200_120), "1751371200.120");
    assert_eq!(hec_time(1_751_371_200_005), "1751371200.005");
    assert_eq!(hec_time(-1), "-0.001");
}

#[test]
fn splits_by_uncompressed_bytes_and_reports_oversized() {
    let one = ENV_1.len() + 1;
    let a = splunk(Compression::None, one * 2 + 10);
    let events: Vec<_> = (1..=5).map(event).collect();
    let batch = a.encode(&events);
    let ranges: Vec<_> = batch.requests.iter().map(|r| r.events.clone()).collect();
    assert_eq!(ranges, [0..2, 2..4, 4..5]);
    for r in &batch.requests {
        assert!(http(r).body.len() <= one * 2 + 10);
    }
    // An event bigger than the limit alone is reported, the others still go.
    let mut big = event(2);
    big.extra
        .insert("pad".into(), serde_json::Value::String("x".repeat(one * 3)));
    let batch = a.encode(&[event(1), big, event(3)]);
    let ranges: Vec<_> = batch.requests.iter().map(|r| r.events.clone()).collect();
    assert_eq!(ranges, [0..1, 2..3]);
    assert_eq!(batch.oversized.len(), 1);
    assert_eq!(batch.oversized[0].0, 1);
    assert!(batch.oversized[0].1.contains("over the request limit"));
}

#[test]
fn envelope_event_parses_back_to_the_same_event() {
    let a = splunk(Compression::None, 1_000_000);
    for e in [event(3), clean_event()] {
        let env: serde_json::Value = serde_json::from_slice(&a.transform_event(&e)).unwrap();
        let back = ScanEvent::parse_line(env["event"].to_string().as_bytes(), 1).unwrap();
        assert_eq!(back, e);
    }
}

#[test]
fn logscale_uses_bearer_repository_and_parser() {
    let config = SiemConfig::with_options(
        "https://cloud.humio.com",
        "ingest-token",
        SiemOptions::Crowdstrike(crate::config::CrowdstrikeOptions {
            repository: Some("sec".into()),
            parser: Some("raxe-json".into()),
            host: Some("h1".into()),
            compression: Compression::None,
            ..Default::default()
        }),
    )
    .unwrap();
    let a = HecAdapter::new(config).unwrap();
    assert_eq!(a.flavor(), HecFlavor::Logscale);
    let batch = a.encode(&[clean_event()]);
    let h = http(&batch.requests[0]);
    assert_eq!(
        h.uri.to_string(),
        "https://cloud.humio.com/api/v1/ingest/hec"
    );
    assert_eq!(h.headers["authorization"], "Bearer ingest-token");
    assert_eq!(
        std::str::from_utf8(&h.body).unwrap(),
        r#"{"time":1751371200,"host":"h1","source":"raxe","sourcetype":"raxe-json","index":"sec","event":{"event_id":"evt-clean","timestamp":"2025-07-01T12:00:00.000Z","event_type":"scan","threat_detected":false,"customer_id":"cust_acme"}}
"#
    );
    // Gzip on by default for LogScale.
    let a = HecAdapter::new(
        SiemConfig::crowdstrike("https://cloud.humio.com/custom/path", "t").unwrap(),
    )
    .unwrap();
    let h = http(&a.encode(&[clean_event()]).requests[0]).clone();
    assert_eq!(h.headers["content-encoding"], "gzip");
    assert_eq!(h.uri.path(), "/custom/path");
}

fn hec(status: u16, code: u32) -> Outcome {
    classify_hec(&resp(status, &format!(r#"{{"text":"x","code":{code}}}"#)))
}

fn kind(o: &Outcome) -> &'static str {
    match o {
        Outcome::Delivered => "delivered",
        Outcome::Retry { .. } => "retry",
        Outcome::Rejected { .. } => "rejected",
        Outcome::TooLarge { .. } => "too_large",
        Outcome::AuthFailed { .. } => "auth",
        Outcome::Misconfigured { .. } => "config",
    }
}

#[test]
fn every_hec_code() {
    let table: [(u16, u32, &str); 23] = [
        (200, 0, "delivered"),
        (403, 1, "auth"),
        (401, 2, "auth"),
        (401, 3, "auth"),
        (403, 4, "auth"),
        (400, 5, "rejected"),
        (400, 6, "rejected"),
        (400, 7, "config"),
        (500, 8, "retry"),
        (503, 9, "retry"),
        (400, 10, "config"),
        (400, 11, "config"),
        (400, 12, "rejected"),
        (400, 13, "rejected"),
        (400, 14, "config"),
        (400, 15, "rejected"),
        (400, 16, "config"),
        (200, 17, "delivered"),
        (503, 18, "retry"),
        (503, 19, "retry"),
        (503, 20, "retry"),
        (400, 21, "auth"),
        (400, 22, "auth"),
    ];
    for (status, code, want) in table {
        assert_eq!(kind(&hec(status, code)), want, "HTTP {status} code {code}");
    }
    assert_eq!(
        hec(400, 5),
        Outcome::Rejected {
            events: RejectedEvents::All,
            reason: r#"HTTP 400: {"text":"x","code":5}"#.into()
        }
    );
}

#[test]
fn invalid_event_number_names_the_first_bad_event() {
    for code in [6, 12, 13, 15] {
        let o = classify_hec(&resp(
            400,
            &format!(r#"{{"text":"Invalid data format","code":{code},"invalid-event-number":37}}"#),
        ));
        let Outcome::Rejected { events, .. } = o else {
            panic!("{o:?}")
        };
        assert_eq!(events, RejectedEvents::FirstBad(37));
        let Outcome::Rejected { events, .. } = hec(400, code) else {
            panic!()
        };
        assert_eq!(events, RejectedEvents::Unknown);
    }
}

#[test]
fn http_only_statuses() {
    let k = |s: u16| kind(&classify_hec(&resp(s, "<html>proxy</html>")));
    assert_eq!(k(200), "delivered");
    assert_eq!(k(204), "delivered");
    assert_eq!(k(413), "too_large");
    for s in [408, 429, 502, 504, 500, 503, 599] {
        assert_eq!(k(s), "retry", "{s}");
    }
    for s in [404, 415, 501, 301] {
        assert_eq!(k(s), "config", "{s}");
    }
    assert_eq!(k(401), "auth");
    assert_eq!(k(403), "auth");
    assert_eq!(k(400), "rejected");
    assert_eq!(k(422), "rejected");
}

#[test]
fn retry_after_seconds_and_http_date() {
    let o = classify_hec(&resp_with(503, r#"{"code":9}"#, ("retry-after", "7")));
    assert_eq!(
        o,
        Outcome::Retry {
            after: Some(Duration::from_secs(7)),
            reason: r#"HTTP 503: {"code":9}"#.into()
        }
    );
    let r = resp_with(429, "", ("retry-after", "Tue, 01 Jul 2025 12:00:30 GMT"));
    let now = httpdate::parse_http_date("Tue, 01 Jul 2025 12:00:00 GMT").unwrap();
    assert_eq!(
        crate::http_common::retry_after_at(&r.headers, now),
        Some(Duration::from_secs(30))
    );
    let past = httpdate::parse_http_date("Wed, 02 Jul 2025 12:00:00 GMT").unwrap();
    assert_eq!(
        crate::http_common::retry_after_at(&r.headers, past),
        Some(Duration::ZERO)
    );
    let r = resp_with(429, "", ("retry-after", "soon"));
    assert_eq!(crate::http_common::retry_after(&r.headers), None);
}

#[test]
fn logscale_statuses() {
    use crate::logscale::classify_logscale;
    let k = |s: u16| kind(&classify_logscale(&resp(s, "")));
    assert_eq!(k(200), "delivered");
    assert_eq!(k(201), "retry");
    assert_eq!(k(204), "retry");
    assert_eq!(k(302), "retry");
    assert_eq!(k(401), "auth");
    assert_eq!(k(403), "auth");
    assert_eq!(k(404), "config");
    assert_eq!(k(408), "retry");
    assert_eq!(k(429), "retry");
    assert_eq!(k(413), "too_large");
    assert_eq!(k(400), "rejected");
    assert_eq!(k(422), "rejected");
    for s in [500, 501, 502, 503, 504] {
        assert_eq!(k(s), "retry");
    }
}

#[test]
fn transport_errors_retry() {
    let a = splunk(Compression::None, 1000);
    let req = &a.encode(&[clean_event()]).requests[0];
    for e in [
        TransportError::Connect("refused".into()),
        TransportError::Timeout(Duration::from_secs(1)),
        TransportError::Tls("invalid peer certificate: UnknownIssuer".into()),
        TransportError::Io("reset".into()),
    ] {
        assert_eq!(kind(&a.classify(req, &Err(e))), "retry");
    }
}

/// Queued events as the engine hands them to HEC: v2 records, undecoded.
fn queued(events: &[ScanEvent]) -> Vec<JsonEvent> {
    events
        .iter()
        .map(|e| JsonEvent::from_record(e.to_queue_bytes().into()).unwrap())
        .collect()
}

#[test]
fn encoding_queued_json_sends_the_same_bytes_as_encoding_events() {
    assert!(splunk(Compression::None, 1 << 20).embeds_json());
    let mut events: Vec<_> = (1..=5).map(event).collect();
    events.push(clean_event());
    let one = ENV_1.len() + 1;
    for (compression, max) in [
        (Compression::None, 1 << 20),
        (Compression::None, one * 2 + 10),
        (Compression::Gzip, one * 2 + 10),
    ] {
        let a = splunk(compression, max);
        let from_events = a.encode(&events);
        let from_json = a.encode_json(&queued(&events));
        assert!(from_events.requests.len() > 1 || max == 1 << 20);
        assert_eq!(from_events.requests.len(), from_json.requests.len());
        for (x, y) in from_events.requests.iter().zip(&from_json.requests) {
            assert_eq!(x.events, y.events);
            assert_eq!(http(x).body, http(y).body);
            assert_eq!(http(x).headers, http(y).headers);
        }
    }
    // The envelope holds the very object that was queued, with its exact time.
    let body = splunk(Compression::None, 1 << 20).encode_json(&queued(&[event(1), clean_event()]));
    let body = String::from_utf8(http(&body.requests[0]).body.to_vec()).unwrap();
    assert_eq!(body, format!("{ENV_1}\n{ENV_CLEAN}\n"));
}

#[test]
fn old_v1_queue_records_encode_to_the_same_envelope() {
    let a = splunk(Compression::None, 1 << 20);
    let v1 = crate::event::to_v1_queue_bytes(&event(1));
    assert_eq!(v1[0], b'{');
    let json = JsonEvent::from_record(v1.into()).unwrap();
    let batch = a.encode_json(&[json]);
    assert_eq!(
        http(&batch.requests[0]).body,
        format!("{ENV_1}\n").as_bytes()
    );
}

#[test]
fn oversized_queued_json_is_reported_like_an_oversized_event() {
    let one = ENV_1.len() + 1;
    let a = splunk(Compression::None, one * 2 + 10);
    let mut big = event(2);
    big.extra
        .insert("pad".into(), serde_json::Value::String("x".repeat(one * 3)));
    let batch = a.encode_json(&queued(&[event(1), big, event(3)]));
    let ranges: Vec<_> = batch.requests.iter().map(|r| r.events.clone()).collect();
    assert_eq!(ranges, [0..1, 2..3]);
    assert_eq!(batch.oversized.len(), 1);
    assert_eq!(batch.oversized[0].0, 1);
}

#[test]
fn envelope_time_matches_hec_time_for_every_shape() {
    let meta = HecMeta {
        host: "h".into(),
        source: "s".into(),
        sourcetype: None,
        index: None,
    };
    let mut e = clean_event();
    for ms in [
        0,
        1,
        7,
        10,
        99,
        100,
        999,
        1_000,
        1_751_371_200_000,
        1_769_769_000_123,
        1_769_769_000_120,
        253_402_300_799_999,
        -1,
        -1_500,
        i64::MAX,
        i64::MIN,
    ] {
        e.timestamp_ms = ms;
        let env = String::from_utf8(envelope(&meta, &e)).unwrap();
        let want = format!("{{\"time\":{},\"host\"", hec_time(ms));
        assert!(env.starts_with(&want), "{ms}: {env}");
    }
}

#[test]
fn a_success_code_on_an_error_status_is_not_delivered() {
    for (status, code) in [(503, 0), (502, 17), (400, 0)] {
        let o = classify_hec(&resp(
            status,
            &format!(r#"{{"text":"Success","code":{code}}}"#),
        ));
        assert_ne!(o, Outcome::Delivered, "{status} with code {code}");
    }
    assert!(matches!(
        classify_hec(&resp(503, r#"{"code":0}"#)),
        Outcome::Retry { .. }
    ));
}
