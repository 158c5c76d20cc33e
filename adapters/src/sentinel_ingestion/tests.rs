//! Logs Ingestion adapter: request shape, ≤ 1 MB splitting both ways, oversized records,
//! classification and validation. (Token exchange and delivery against local servers are
//! in tests/tests/sentinel_ingestion.rs.)

use serde_json::Value;

use super::*;
use crate::test_support::{event, gunzip, resp, resp_with};

fn config() -> SiemConfig {
    SiemConfig::sentinel_logs_ingestion(
        "https://my-dce.eastus-1.ingest.monitor.azure.com/",
        "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "0f0e0d0c-0b0a-0908-0706-050403020100",
        "dcr-00112233445566778899aabbccddeeff",
        "Custom-RaxeEvents_CL",
        "s3cr3t&=/+",
    )
    .unwrap()
}

fn adapter() -> LogsIngestionAdapter {
    LogsIngestionAdapter::new(config()).unwrap()
}

fn http(r: &EncodedRequest) -> &HttpRequest {
    match &r.payload {
        Payload::Http(h) => h,
        Payload::Syslog(_) => panic!("syslog payload"),
    }
}

#[test]
fn request_shape_is_a_gzipped_array_of_pascal_case_records() {
    let a = adapter();
    let batch = a.encode(&[event(1), event(2)]);
    assert!(batch.oversized.is_empty());
    assert_eq!(batch.requests.len(), 1);
    let req = http(&batch.requests[0]);
    assert_eq!(
        req.uri.to_string(),
        "https://my-dce.eastus-1.ingest.monitor.azure.com/dataCollectionRules/\
         dcr-00112233445566778899aabbccddeeff/streams/Custom-RaxeEvents_CL?api-version=2023-01-01"
    );
    assert_eq!(req.headers["content-encoding"], "gzip");
    assert_eq!(req.headers["content-type"], "application/json");
    // The token is added at send time, never baked into the encoded request.
    assert!(req.headers.get("authorization").is_none());
    let plain = gunzip(&req.body);
    assert_eq!(plain.len(), req.uncompressed_len);
    let v: Value = serde_json::from_slice(&plain).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["TimeGenerated"], "2026-01-30T10:30:00.123Z");
    assert_eq!(rows[0]["EventId"], "evt-1");
    assert_eq!(rows[0]["Severity"], "Critical");
    assert_eq!(rows[0]["RuleIds"][1], "pi-003");
    assert!(rows[0].get("EventTime").is_none());
}

#[test]
fn compression_none_sends_plain_json() {
    let mut c = config();
    if let SiemOptions::Sentinel(o) = &mut c.extra {
        o.compression = Some(Compression::None);
    }
    let a = LogsIngestionAdapter::new(c).unwrap();
    let batch = a.encode(&[event(1)]);
    let req = http(&batch.requests[0]);
    assert!(req.headers.get("content-encoding").is_none());
    assert_eq!(req.body[0], b'[');
}

#[test]
fn reserved_pass_through_names_are_prefixed() {
    let line = br#"{"event_id":"e","timestamp":1,"customer_id":"c","tenant_id":"t","type":"x","TimeGenerated":"y"}"#;
    let e = ScanEvent::parse_line(line, 1).unwrap();
    let rec: Value = serde_json::from_slice(&adapter().transform_event(&e)).unwrap();
    assert_eq!(rec["ExtraTenantId"], "t");
    assert_eq!(rec["ExtraType"], "x");
    assert_eq!(rec["ExtraTimeGenerated"], "y");
    assert!(rec.get("TenantId").is_none());
}

#[test]
fn field_values_are_cut_at_the_logs_ingestion_limit_of_64k() {
    let line = format!(
        r#"{{"event_id":"e","timestamp":1,"customer_id":"c","blob":"{}","note":"{}"}}"#,
        "é".repeat(40_000),
        "x".repeat(50_000)
    );
    let e = ScanEvent::parse_line(line.as_bytes(), 1).unwrap();
    let rec: Value = serde_json::from_slice(&adapter().transform_event(&e)).unwrap();
    let blob = rec["Blob"].as_str().unwrap();
    assert!(
        blob.len() <= 64 * 1024 && blob.len() > 64 * 1024 - 2,
        "{}",
        blob.len()
    );
    // Under the limit: kept whole (the Data Collector API would cut it at 32 KiB).
    assert_eq!(rec["Note"].as_str().unwrap().len(), 50_000);
}

/// An event whose record is about `kb` KB of distinct (poorly compressible) text.
fn big_event(n: usize, kb: usize) -> ScanEvent {
    let mut seed = n as u64 * 7919 + 1;
    let mut fields = String::new();
    for f in 0..kb.div_ceil(30) {
        let mut text = String::with_capacity(30 * 1024);
        while text.len() < 30 * 1024 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            text.push_str(&format!("{:016x}", seed));
        }
        fields.push_str(&format!(r#","blob_{f}":"{text}""#));
    }
    let line = format!(r#"{{"event_id":"big-{n}","timestamp":1,"customer_id":"c"{fields}}}"#);
    ScanEvent::parse_line(line.as_bytes(), n).unwrap()
}

#[test]
fn batches_split_to_one_megabyte_both_ways_and_keep_order() {
    let a = adapter();
    let events: Vec<ScanEvent> = (0..40).map(|n| big_event(n, 90)).collect();
    let batch = a.encode(&events);
    assert!(batch.oversized.is_empty());
    assert!(
        batch.requests.len() >= 4,
        "{} requests",
        batch.requests.len()
    );
    let mut next = 0;
    for r in &batch.requests {
        assert_eq!(r.events.start, next, "requests cover the batch in order");
        next = r.events.end;
        let req = http(r);
        assert!(req.body.len() <= MAX_REQUEST_BYTES);
        let plain = gunzip(&req.body);
        assert!(plain.len() <= MAX_REQUEST_BYTES, "{}", plain.len());
        let rows: Vec<Value> = serde_json::from_slice(&plain).unwrap();
        assert_eq!(rows.len(), r.events.len());
        assert_eq!(rows[0]["EventId"], format!("big-{}", r.events.start));
    }
    assert_eq!(next, 40);
}

#[test]
fn a_lower_limit_holds_for_both_sizes() {
    // Random hex compresses to ~55%: a 100 KB limit packs by the uncompressed size, so
    // the compressed bodies fit; with compression off the same limit still holds.
    let events: Vec<ScanEvent> = (0..12).map(|n| big_event(n, 30)).collect();
    let a = adapter().with_max_request_bytes(100_000);
    let batch = a.encode(&events);
    for r in &batch.requests {
        let req = http(r);
        assert!(req.body.len() <= 100_000 && req.uncompressed_len <= 100_000);
    }
    assert_eq!(
        batch.requests.iter().map(|r| r.events.len()).sum::<usize>(),
        12
    );
}

#[test]
fn a_body_that_grows_when_sent_is_split_until_it_fits() {
    // JSON text always shrinks under gzip at these sizes, so a `make` that doubles the
    // body stands in for incompressible data: the sent size alone must drive the split.
    let items: Vec<Vec<u8>> = (0..8)
        .map(|n| format!("{{\"n\":{n:05}}}").into_bytes())
        .collect();
    assert_eq!(items[0].len(), 11);
    let doubled = |body: Vec<u8>| {
        let uncompressed_len = body.len();
        let mut sent = body.clone();
        sent.extend_from_slice(&body);
        HttpRequest {
            method: http::Method::POST,
            uri: Uri::from_static("http://h/"),
            headers: HeaderMap::new(),
            body: sent.into(),
            uncompressed_len,
        }
    };
    // 8 records: 97 bytes plain (fits 100), 194 sent → halves of 49 plain / 98 sent.
    let batch = encoder::encode(&items, 100, &doubled);
    let spans: Vec<_> = batch.requests.iter().map(|r| r.events.clone()).collect();
    assert_eq!(spans, vec![0..4, 4..8]);
    assert!(batch.oversized.is_empty());
    // A lone record whose sent form cannot fit is oversized, in batch order.
    let batch = encoder::encode(&items[..3], 20, &doubled);
    assert!(batch.requests.is_empty());
    let at: Vec<usize> = batch.oversized.iter().map(|(i, _)| *i).collect();
    assert_eq!(at, vec![0, 1, 2]);
    assert!(
        batch.oversized[0].1.contains("26 bytes"),
        "{}",
        batch.oversized[0].1
    );
}

#[test]
fn single_event_over_the_limit_is_oversized_and_the_rest_delivered() {
    let a = adapter();
    // Input events are capped at 1 MiB, so a record between 1,000,000 and 1 MiB exists.
    let events = vec![event(1), big_event(2, 1010), event(3)];
    let batch = a.encode(&events);
    assert_eq!(batch.oversized.len(), 1);
    assert_eq!(batch.oversized[0].0, 1);
    assert!(
        batch.oversized[0]
            .1
            .contains("over the Logs Ingestion limit of 1000000 bytes"),
        "{}",
        batch.oversized[0].1
    );
    let spans: Vec<_> = batch.requests.iter().map(|r| r.events.clone()).collect();
    assert_eq!(spans, vec![0..1, 2..3]);
}

#[test]
fn classification() {
    assert_eq!(classify_answer(&resp(204, "")), Outcome::Delivered);
    assert!(matches!(
        classify_answer(&resp(413, "")),
        Outcome::TooLarge { .. }
    ));
    assert!(matches!(
        classify_answer(&resp(400, r#"{"error":{"code":"InvalidStream"}}"#)),
        Outcome::Rejected {
            events: crate::outcome::RejectedEvents::Unknown,
            ..
        }
    ));
    assert!(matches!(
        classify_answer(&resp(401, "")),
        Outcome::AuthFailed { .. }
    ));
    assert!(matches!(
        classify_answer(&resp(404, "")),
        Outcome::Misconfigured { .. }
    ));
    match classify_answer(&resp_with(429, "", ("retry-after", "7"))) {
        Outcome::Retry { after, .. } => assert_eq!(after, Some(Duration::from_secs(7))),
        o => panic!("{o:?}"),
    }
    match classify_answer(&resp(403, "")) {
        Outcome::Retry { after, reason } => {
            assert_eq!(after, Some(classify::FORBIDDEN_RETRY));
            assert!(reason.contains("Monitoring Metrics Publisher"), "{reason}");
        }
        o => panic!("{o:?}"),
    }
    assert!(matches!(
        classify_answer(&resp(503, "")),
        Outcome::Retry { .. }
    ));
}

#[test]
fn token_step_failures_are_told_apart_from_the_dcr() {
    let mut r = resp(401, r#"{"error":"invalid_client"}"#);
    r.headers
        .insert(TOKEN_STEP_HEADER, HeaderValue::from_static("1"));
    match classify_answer(&r) {
        Outcome::AuthFailed { reason } => {
            assert!(reason.contains("Entra ID token request failed"), "{reason}");
            assert!(reason.contains("invalid_client"), "{reason}");
        }
        o => panic!("{o:?}"),
    }
    let mut ok = resp(200, "not json");
    ok.headers
        .insert(TOKEN_STEP_HEADER, HeaderValue::from_static("1"));
    assert!(matches!(
        classify_answer(&ok),
        Outcome::Misconfigured { .. }
    ));
    let mut busy = resp(503, "");
    busy.headers
        .insert(TOKEN_STEP_HEADER, HeaderValue::from_static("1"));
    assert!(matches!(classify_answer(&busy), Outcome::Retry { .. }));
}

/// Forms Azure answers 404 for are refused by `configure` (`check_azure_names`); a file
/// holding one still loads, so its destination keeps its events queued and says why.
#[test]
fn azure_names_are_checked_for_configure_not_for_loading() {
    let SiemOptions::Sentinel(good) = config().extra else {
        unreachable!()
    };
    assert!(check_azure_names(&good).is_ok());
    for (field, value) in [
        ("dcr_id", "abc"),
        ("dcr_id", "dcr-0011223344556677"),
        ("dcr_id", "dcr-00112233445566778899aabbccddeexx"),
        ("stream", "RaxeEvents_CL"),
    ] {
        let mut bad = config();
        if let SiemOptions::Sentinel(o) = &mut bad.extra {
            match field {
                "dcr_id" => o.dcr_id = value.into(),
                _ => o.stream = value.into(),
            }
        }
        bad.validate().unwrap();
        let SiemOptions::Sentinel(o) = &bad.extra else {
            unreachable!()
        };
        let err = check_azure_names(o).unwrap_err().to_string();
        assert!(err.contains(field), "{err}");
    }
}

#[test]
fn validation_and_secrets() {
    let c = config();
    let shown = format!("{c:?} {c} {:?}", adapter());
    assert!(!shown.contains("s3cr3t"), "{shown}");
    for (field, value) in [("dcr_id", "dcr/../x"), ("stream", ""), ("tenant_id", "a b")] {
        let mut bad = config();
        if let SiemOptions::Sentinel(o) = &mut bad.extra {
            match field {
                "dcr_id" => o.dcr_id = value.into(),
                "stream" => o.stream = value.into(),
                _ => o.tenant_id = value.into(),
            }
        }
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains(field), "{err}");
        assert!(!err.contains("s3cr3t"));
    }
    let mut dc =
        SiemConfig::sentinel("https://ws.ods.opinsights.azure.com", "ws", "Raxe", "AAAA").unwrap();
    if let SiemOptions::Sentinel(o) = &mut dc.extra {
        o.compression = Some(Compression::Gzip);
    }
    let err = dc.validate().unwrap_err().to_string();
    assert!(
        err.contains("compression") && err.contains("signs the exact body"),
        "{err}"
    );
    // Older config files (no `api`) keep meaning the Data Collector API.
    let old: SiemConfig = serde_json::from_str(
        r#"{"siem_type":"sentinel","endpoint_url":"https://x","auth_token":"AAAA","extra":{"workspace_id":"w","log_type":"L"}}"#,
    )
    .unwrap();
    assert!(matches!(&old.extra, SiemOptions::Sentinel(o) if o.api == SentinelApi::DataCollector));
    // And a logs-ingestion config round-trips.
    let text = serde_json::to_string(&config()).unwrap();
    assert_eq!(serde_json::from_str::<SiemConfig>(&text).unwrap(), config());
}

#[test]
fn form_encoding_and_refresh_timing() {
    assert_eq!(token::form_encode("a b&c=/+é"), "a%20b%26c%3D%2F%2B%C3%A9");
    assert_eq!(
        token::form_encode(SCOPE),
        "https%3A%2F%2Fmonitor.azure.com%2F%2F.default"
    );
    assert_eq!(
        token::refresh_after(Duration::from_secs(3599)),
        Duration::from_secs(3299)
    );
    assert_eq!(
        token::refresh_after(Duration::from_secs(4)),
        Duration::from_secs(2)
    );
}

#[test]
fn sovereign_clouds_get_their_audience_and_login_host() {
    use super::token::{default_token_url, Cloud};
    for (host, cloud, scope, login) in [
        (
            "my-dce-5kyl.eastus-1.ingest.monitor.azure.com",
            Cloud::Public,
            "https://monitor.azure.com//.default",
            "https://login.microsoftonline.com/t/oauth2/v2.0/token",
        ),
        (
            "my-dce.usgovvirginia-1.ingest.monitor.azure.us",
            Cloud::UsGov,
            "https://monitor.azure.us//.default",
            "https://login.microsoftonline.us/t/oauth2/v2.0/token",
        ),
        (
            "MY-DCE.chinanorth3-1.ingest.monitor.azure.cn.",
            Cloud::China,
            "https://monitor.azure.cn//.default",
            "https://login.chinacloudapi.cn/t/oauth2/v2.0/token",
        ),
        (
            "127.0.0.1",
            Cloud::Public,
            SCOPE,
            "https://login.microsoftonline.com/t/oauth2/v2.0/token",
        ),
    ] {
        assert_eq!(Cloud::of_host(host), cloud, "{host}");
        assert_eq!(cloud.scope(), scope);
        assert_eq!(default_token_url("t", cloud), login);
    }
}
