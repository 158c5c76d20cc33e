use time::macros::datetime;

use super::*;
use crate::outcome::RejectedEvents;
use crate::test_support::{clean_event, event, resp};

const WS: &str = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn fixed() -> OffsetDateTime {
    datetime!(2025-07-01 12:00:00 UTC)
}

fn adapter() -> SentinelAdapter {
    let c = SiemConfig::sentinel(
        &format!("https://{WS}.ods.opinsights.azure.com"),
        WS,
        "RaxeEvents",
        KEY,
    )
    .unwrap();
    SentinelAdapter::new(c).unwrap().with_clock(fixed)
}

fn http(r: &EncodedRequest) -> &HttpRequest {
    match &r.payload {
        Payload::Http(h) => h,
        _ => panic!(),
    }
}

const REC_1: &str = r#"{"EventTime":"2026-01-30T10:30:00.123Z","EventId":"evt-1","EventType":"scan","ThreatDetected":true,"Severity":"Critical","RuleIds":["pi-001","pi-003"],"Families":["PI"],"PromptHash":"sha256:abc123","PromptLength":42,"DetectionCount":2,"ScanDurationMs":4.5,"CustomerId":"cust_acme","MsspId":"mssp_1","AgentId":"agent_prod_001","InstallationId":"inst_abc123","Model":"gpt-x"}"#;
const REC_CLEAN: &str = r#"{"EventTime":"2025-07-01T12:00:00.000Z","EventId":"evt-clean","EventType":"scan","ThreatDetected":false,"CustomerId":"cust_acme"}"#;

#[test]
fn golden_request() {
    let a = adapter();
    let batch = a.encode(&[event(1), clean_event()]);
    assert_eq!(batch.requests.len(), 1);
    let h = http(&batch.requests[0]);
    let body = format!("[{REC_1},{REC_CLEAN}]");
    assert_eq!(std::str::from_utf8(&h.body).unwrap(), body);
    assert_eq!(
        h.uri.to_string(),
        format!("https://{WS}.ods.opinsights.azure.com/api/logs?api-version=2016-04-01")
    );
    assert_eq!(h.headers["content-type"], "application/json");
    assert_eq!(h.headers["log-type"], "RaxeEvents");
    assert_eq!(h.headers["time-generated-field"], "EventTime");
    assert_eq!(h.headers["x-ms-date"], "Tue, 01 Jul 2025 12:00:00 GMT");
    let key = crate::config::SiemConfig::sentinel("https://h", WS, "R", KEY)
        .unwrap()
        .sentinel_key()
        .unwrap();
    assert_eq!(
        h.headers["authorization"],
        signature::authorization(WS, &key, body.len(), "Tue, 01 Jul 2025 12:00:00 GMT").as_str()
    );
    assert!(h.headers["authorization"].is_sensitive());
    assert!(h.headers.get("content-encoding").is_none());
    assert_eq!(h.headers.len(), 5);
}

#[test]
fn test_vector_1_through_the_adapter_signer() {
    let a = adapter();
    let mut req = crate::http_common::post(
        &a.uri,
        &a.headers,
        br#"[{"scan_id":"s-1","severity":"high"}]"#.to_vec(),
        false,
    );
    a.sign(&mut req, fixed());
    assert_eq!(
        req.headers["authorization"],
        "SharedKey 3f2504e0-4f89-41d3-9a0c-0305e82c3301:JQCSsrTy2s3qmCIu9O730FWbASailCAdOk5NKbbG9Ac="
    );
    let mut req = crate::http_common::post(
        &a.uri,
        &a.headers,
        r#"[{"user":"José"}]"#.as_bytes().to_vec(),
        false,
    );
    a.sign(&mut req, fixed());
    assert_eq!(
        req.headers["authorization"],
        "SharedKey 3f2504e0-4f89-41d3-9a0c-0305e82c3301:oEOD71L2oDCYaNmyYHeQUMGOiuYkb18FsOV7rlrnXXs="
    );
}

#[test]
fn reserved_and_colliding_pass_through_names_are_renamed() {
    let mut e = clean_event();
    for (k, v) in [
        ("TimeGenerated", "a"),
        ("tenant", "b"),
        ("raw_data", "c"),
        ("event_time", "d"),
        ("EventTime", "e"),
        ("client ip", "f"),
        ("", "g"),
        ("gone", "x"),
    ] {
        e.extra.insert(k.into(), v.into());
    }
    e.extra.insert("gone".into(), serde_json::Value::Null);
    let r = records::record(&e);
    assert_eq!(r["EventTime"], "2025-07-01T12:00:00.000Z");
    assert_eq!(r["ExtraTimeGenerated"], "a");
    assert_eq!(r["ExtraTenant"], "b");
    assert_eq!(r["ExtraRawData"], "c");
    assert_eq!(r["ClientIp"], "f");
    assert_eq!(r["Extra"], "g");
    // "EventTime" and "event_time" both collide with our column.
    let mut got: Vec<_> = ["ExtraEventTime", "ExtraExtraEventTime"]
        .iter()
        .map(|k| r[*k].as_str().unwrap().to_string())
        .collect();
    got.sort();
    assert_eq!(got, ["d", "e"]);
    assert!(!r.contains_key("TimeGenerated"));
    assert!(!r.contains_key("tenant"));
    assert!(!r.contains_key("RawData"));
    assert!(!r.contains_key("Gone"));
}

#[test]
fn oversize_values_are_cut_to_32k() {
    let mut e = clean_event();
    e.extra.insert("blob".into(), "é".repeat(40_000).into());
    e.extra
        .insert("list".into(), serde_json::json!(vec!["abcdefgh"; 5000]));
    let r = records::record(&e);
    let blob = r["Blob"].as_str().unwrap();
    assert!(blob.len() <= records::MAX_FIELD_BYTES && blob.len() > 32_000);
    let list = r["List"].as_str().unwrap();
    assert!(list.starts_with("[\"abcdefgh\""));
    assert!(list.len() <= records::MAX_FIELD_BYTES);
}

#[test]
fn splits_posts_by_size() {
    let one = REC_1.len();
    let a = adapter().with_max_post_bytes(2 * one + 3);
    let events: Vec<_> = (1..=5).map(event).collect();
    let batch = a.encode(&events);
    let ranges: Vec<_> = batch.requests.iter().map(|r| r.events.clone()).collect();
    assert_eq!(ranges, [0..2, 2..4, 4..5]);
    for r in &batch.requests {
        let body = &http(r).body;
        assert!(body.len() <= 2 * one + 3);
        let v: Vec<serde_json::Value> = serde_json::from_slice(body).unwrap();
        assert_eq!(v.len(), r.events.len());
    }
}

#[test]
fn record_values_map_back_to_the_event() {
    let e = event(9);
    let r = records::record(&e);
    assert_eq!(r["EventId"], e.event_id.as_str());
    assert_eq!(r["CustomerId"], e.customer_id.as_str());
    assert_eq!(r["PromptLength"], 42);
    assert_eq!(r["ScanDurationMs"], 4.5);
    assert_eq!(r["RuleIds"], serde_json::json!(e.rule_ids));
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
fn every_data_collector_status() {
    let k = |s: u16, body: &str| kind(&classify_data_collector(&resp(s, body), 1000));
    assert_eq!(k(200, ""), "delivered");
    assert_eq!(k(202, ""), "delivered");
    for code in [
        "InactiveCustomer",
        "InvalidApiVersion",
        "InvalidCustomerId",
        "InvalidLogType",
        "MissingApiVersion",
        "MissingContentType",
        "MissingLogType",
        "UnsupportedContentType",
    ] {
        assert_eq!(
            k(400, &format!(r#"{{"Error":"{code}","Message":"m"}}"#)),
            "config",
            "{code}"
        );
    }
    assert_eq!(
        classify_data_collector(
            &resp(400, r#"{"Error":"InvalidDataFormat","Message":"m"}"#),
            10
        ),
        Outcome::Rejected {
            events: RejectedEvents::Unknown,
            reason: r#"HTTP 400: {"Error":"InvalidDataFormat","Message":"m"}"#.into()
        }
    );
    assert_eq!(k(403, "InvalidAuthorization"), "auth");
    assert_eq!(k(401, ""), "auth");
    assert_eq!(k(404, ""), "config");
    assert_eq!(
        kind(&classify_data_collector(&resp(404, ""), MAX_POST_BYTES + 1)),
        "too_large"
    );
    assert_eq!(k(413, ""), "too_large");
    for s in [429, 500, 503, 502, 408] {
        assert_eq!(k(s, ""), "retry", "{s}");
    }
}

#[test]
fn records_are_written_byte_for_byte() {
    let mut e = event(2);
    for (k, v) in [
        ("TimeGenerated", "a"),
        ("tenant", "b"),
        ("raw_data", "c"),
        ("event_time", "d"),
        ("EventTime", "e"),
        ("client ip", "f"),
        ("", "g"),
        ("q\"uote", "x\"y\\z\u{1}\n€😀"),
    ] {
        e.extra.insert(k.into(), v.into());
    }
    e.extra.insert("gone".into(), serde_json::Value::Null);
    e.extra.insert("n".into(), serde_json::json!(1.5));
    e.extra.insert("i".into(), serde_json::json!(-7));
    e.extra.insert("b".into(), serde_json::json!(true));
    e.extra.insert(
        "obj".into(),
        serde_json::json!({"a": [1, {"b": null}], "z": "é"}),
    );
    e.scan_duration_ms = Some(0.1 + 0.2);
    e.severity = None;
    let mut out = Vec::new();
    records::write_record(&e, &mut out);
    let expected = r#"{"EventTime":"2026-01-30T10:30:00.123Z","EventId":"evt-2","EventType":"scan","ThreatDetected":true,"RuleIds":["pi-001","pi-003"],"Families":["PI"],"PromptHash":"sha256:abc123","PromptLength":42,"DetectionCount":2,"ScanDurationMs":0.30000000000000004,"CustomerId":"cust_acme","MsspId":"mssp_1","AgentId":"agent_prod_001","InstallationId":"inst_abc123","Extra":"g","ExtraEventTime":"e","ExtraTimeGenerated":"a","B":true,"ClientIp":"f","ExtraExtraEventTime":"d","I":-7,"Model":"gpt-x","N":1.5,"Obj":{"a":[1,{"b":null}],"z":"é"},"QUote":"x\"y\\z\u0001\n€😀","ExtraRawData":"c","ExtraTenant":"b"}"#;
    assert_eq!(String::from_utf8(out).unwrap(), expected);
}
