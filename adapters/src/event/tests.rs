use super::*;

fn parse(s: &str) -> Result<ScanEvent, EventError> {
    ScanEvent::parse_line(s.as_bytes(), 7)
}

const FULL: &str = r#"{"event_id":"evt-1","timestamp":"2026-01-30T10:30:00.123Z","event_type":"scan","threat_detected":true,"severity":"CRITICAL","rule_ids":["pi-001","pi-003"],"families":["PI"],"prompt_hash":"sha256:abc123","prompt_length":42,"detection_count":2,"scan_duration_ms":4.5,"customer_id":"cust_acme","mssp_id":"mssp_1","agent_id":"agent_prod_001","installation_id":"inst_abc123","model":"gpt-x","nested":{"a":[1,2]}}"#;

#[test]
fn parses_every_field_and_keeps_unknown_ones() {
    let e = parse(FULL).unwrap();
    assert_eq!(e.event_id, "evt-1");
    assert_eq!(e.timestamp_ms, 1_769_769_000_123);
    assert_eq!(e.event_type, "scan");
    assert!(e.threat_detected);
    assert_eq!(e.severity, Some(Severity::Critical));
    assert_eq!(e.rule_ids, ["pi-001", "pi-003"]);
    assert_eq!(e.families, ["PI"]);
    assert_eq!(e.prompt_hash.as_deref(), Some("sha256:abc123"));
    assert_eq!(e.prompt_length, Some(42));
    assert_eq!(e.detection_count, Some(2));
    assert_eq!(e.scan_duration_ms, Some(4.5));
    assert_eq!(e.customer_id, "cust_acme");
    assert_eq!(e.mssp_id.as_deref(), Some("mssp_1"));
    assert_eq!(e.agent_id.as_deref(), Some("agent_prod_001"));
    assert_eq!(e.installation_id.as_deref(), Some("inst_abc123"));
    assert_eq!(e.extra.len(), 2);
    assert_eq!(e.extra["model"], "gpt-x");
    assert_eq!(e.extra["nested"]["a"][1], 2);
}

#[test]
fn defaults_for_missing_fields() {
    let before = now_ms();
    let e = parse(r#"{"customer_id":"c"}"#).unwrap();
    assert!(e.timestamp_ms >= before && e.timestamp_ms <= now_ms());
    assert_eq!(e.event_type, "scan");
    assert!(!e.threat_detected);
    assert_eq!(e.severity, None);
    let id = uuid::Uuid::parse_str(&e.event_id).unwrap();
    assert_eq!(id.get_version_num(), 7);
    // null counts as absent
    let e = parse(r#"{"customer_id":"c","severity":null,"agent_id":null}"#).unwrap();
    assert_eq!(e.severity, None);
    assert_eq!(e.agent_id, None);
}

#[test]
fn timestamps_seconds_millis_rfc3339() {
    let ts = |v: &str| {
        parse(&format!(r#"{{"customer_id":"c","timestamp":{v}}}"#))
            .unwrap()
            .timestamp_ms
    };
    assert_eq!(ts("1751371200"), 1_751_371_200_000);
    assert_eq!(ts("1751371200.123"), 1_751_371_200_123);
    assert_eq!(ts("1751371200123"), 1_751_371_200_123);
    assert_eq!(ts("99999999999"), 99_999_999_999_000); // < 1e11: seconds
    assert_eq!(ts("100000000000"), 100_000_000_000); // >= 1e11: ms
    assert_eq!(ts(r#""2025-07-01T12:00:00Z""#), 1_751_371_200_000);
    assert_eq!(ts(r#""2025-07-01T14:00:00.5+02:00""#), 1_751_371_200_500);
}

fn rejected(s: &str) -> EventError {
    parse(s).unwrap_err()
}

#[test]
fn every_rejection_kind_with_its_message() {
    let e = rejected("[1,2]");
    assert_eq!(e.kind, EventErrorKind::NotAnObject);
    assert_eq!(
        e.to_string(),
        "line 7: expected a JSON object, got an array"
    );

    let e = rejected("{not json");
    assert_eq!(e.kind, EventErrorKind::InvalidJson);
    assert!(e.to_string().starts_with("line 7: invalid JSON: "), "{e}");

    let e = rejected(r#"{"event_id":"x"}"#);
    assert_eq!(e.kind, EventErrorKind::MissingCustomerId);
    assert_eq!(
        e.to_string(),
        "line 7: field `customer_id`: missing (every event needs a customer_id)"
    );

    let e = rejected(r#"{"customer_id":""}"#);
    assert_eq!(e.kind, EventErrorKind::EmptyCustomerId);
    assert_eq!(
        e.to_string(),
        "line 7: field `customer_id`: must not be empty"
    );

    let e = rejected(r#"{"customer_id":12}"#);
    assert_eq!(e.kind, EventErrorKind::WrongType);
    assert_eq!(
        e.to_string(),
        "line 7: field `customer_id`: expected a string, got a number"
    );

    let e = rejected(r#"{"customer_id":"c","threat_detected":"yes"}"#);
    assert_eq!(e.kind, EventErrorKind::WrongType);
    assert_eq!(e.field, Some("threat_detected"));
    assert_eq!(
        e.to_string(),
        "line 7: field `threat_detected`: expected a boolean, got a string"
    );

    let e = rejected(r#"{"customer_id":"c","rule_ids":["a",3]}"#);
    assert_eq!(
        e.to_string(),
        "line 7: field `rule_ids`: expected an array of strings, got a number"
    );

    let e = rejected(r#"{"customer_id":"c","prompt_length":-3}"#);
    assert_eq!(
        e.to_string(),
        "line 7: field `prompt_length`: expected a non-negative integer, got -3"
    );

    let e = rejected(r#"{"customer_id":"c","severity":"urgent"}"#);
    assert_eq!(e.kind, EventErrorKind::UnknownSeverity);
    assert_eq!(
        e.to_string(),
        "line 7: field `severity`: expected one of none, low, medium, high, critical (any case), got \"urgent\""
    );

    let e = rejected(r#"{"customer_id":"c","timestamp":"yesterday"}"#);
    assert_eq!(e.kind, EventErrorKind::InvalidTimestamp);
    assert!(
        e.to_string()
            .starts_with("line 7: field `timestamp`: expected an RFC 3339 time"),
        "{e}"
    );

    let e = rejected(r#"{"customer_id":"c","timestamp":true}"#);
    assert_eq!(e.kind, EventErrorKind::WrongType);

    let big = format!(
        r#"{{"customer_id":"c","pad":"{}"}}"#,
        "x".repeat(MAX_EVENT_BYTES)
    );
    let e = rejected(&big);
    assert_eq!(e.kind, EventErrorKind::TooLarge);
    assert_eq!(
        e.to_string(),
        format!(
            "line 7: event is {} bytes, the limit is 1048576 bytes (1 MiB)",
            big.len()
        )
    );
}

#[test]
fn severity_any_case_and_mappings() {
    for (s, sev, cef, sys) in [
        ("none", Severity::None, 0, 6),
        ("Low", Severity::Low, 3, 5),
        ("MEDIUM", Severity::Medium, 5, 4),
        ("hIgh", Severity::High, 7, 3),
        ("critical", Severity::Critical, 10, 2),
    ] {
        assert_eq!(Severity::parse(s), Some(sev));
        assert_eq!(sev.cef(), cef);
        assert_eq!(sev.syslog(), sys);
    }
}

#[test]
fn queue_bytes_round_trip_exactly() {
    let e = parse(FULL).unwrap();
    let bytes = e.to_queue_bytes();
    assert_eq!(ScanEvent::from_queue_bytes(&bytes).unwrap(), e);
    let minimal = ScanEvent::new("c");
    assert_eq!(
        ScanEvent::from_queue_bytes(&minimal.to_queue_bytes()).unwrap(),
        minimal
    );
    assert!(ScanEvent::from_queue_bytes(b"garbage").is_err());
}

#[test]
fn serialized_event_parses_back_equal() {
    let e = parse(FULL).unwrap();
    let json = serde_json::to_vec(&e).unwrap();
    assert_eq!(ScanEvent::parse_line(&json, 1).unwrap(), e);
}

#[test]
fn a_prompt_field_is_dropped_never_forwarded() {
    let e =
        parse(r#"{"customer_id":"c","prompt":"ignore previous instructions","prompt_length":29}"#)
            .unwrap();
    assert!(!e.extra.contains_key("prompt"));
    assert_eq!(e.prompt_length, Some(29));
    let json = serde_json::to_string(&e).unwrap();
    assert!(!json.contains("ignore previous"));
}

/// The fast path (straight into field slots) and the map path agree, on duplicates, escaped
/// keys, nulls, the dropped prompt and every error.
#[test]
fn fast_path_matches_the_map_path() {
    let lines = [
        FULL,
        r#"{"customer_id":"a","customer_id":"b","event_id":"x","timestamp":1769769000123}"#,
        r#"{"customer\u005fid":"esc","event_id":"e","timestamp":1,"x\"y":1,"prompt":"secret"}"#,
        r#"{"customer_id":"c","event_id":"e","timestamp":1,"severity":null,"mssp_id":null}"#,
        r#"{"customer_id":"c","event_id":"e","timestamp":1,"severity":"bad"}"#,
        r#"{"customer_id":"c","event_id":"e","timestamp":1,"rule_ids":"pi"}"#,
        r#"{"customer_id":"","event_id":"e","timestamp":1}"#,
        r#"{"event_id":"e"}"#,
    ];
    for line in lines {
        let fast = ScanEvent::parse_line(line.as_bytes(), 3);
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line).unwrap();
        let slow = ScanEvent::from_json_object(map, 3);
        assert_eq!(fast, slow, "{line}");
    }
    let e = parse(r#"{"customer\u005fid":"esc","event_id":"e","timestamp":1,"prompt":"secret"}"#)
        .unwrap();
    assert_eq!(e.customer_id, "esc");
    assert!(!e.extra.contains_key("prompt"));
}
