//! Property tests: agent values cannot break out of their field in any encoding.
//!
//! * CEF: every line parses back with a strict parser (written here, unescaping) to the
//!   same values, has no raw CR/LF and exactly 7 unescaped header pipes.
//! * HEC: the `event` of every envelope parses back to the same event.
//! * Sentinel: every record maps back to the event's values.

use std::collections::BTreeMap;

use proptest::prelude::*;
use raxe_adapters::cef::{cef_line, CefSettings};
use raxe_adapters::config::CefSrcField;
use raxe_adapters::event::{ScanEvent, Severity};
use raxe_adapters::sentinel::records::record;
use raxe_adapters::splunk::{envelope, HecMeta};
use serde_json::Value;

/// Strings rich in the characters that matter to the encodings.
fn nasty() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            3 => Just('\\'),
            3 => Just('='),
            3 => Just('|'),
            2 => Just('\n'),
            2 => Just('\r'),
            3 => Just(' '),
            1 => Just('"'),
            1 => Just(']'),
            1 => Just('\u{0}'),
            1 => Just('é'),
            6 => proptest::char::range('a', 'z'),
            2 => any::<char>(),
        ],
        0..24,
    )
    .prop_map(String::from_iter)
}

fn severity() -> impl Strategy<Value = Option<Severity>> {
    prop_oneof![
        Just(None),
        Just(Some(Severity::None)),
        Just(Some(Severity::Low)),
        Just(Some(Severity::Medium)),
        Just(Some(Severity::High)),
        Just(Some(Severity::Critical)),
    ]
}

prop_compose! {
    fn scan_event()(
        event_id in nasty(),
        timestamp_ms in 0i64..253_402_300_799_999,
        event_type in nasty(),
        threat_detected in any::<bool>(),
        severity in severity(),
        rule_ids in proptest::collection::vec(nasty(), 0..4),
        families in proptest::collection::vec(nasty(), 0..3),
        prompt_hash in proptest::option::of(nasty()),
        prompt_length in proptest::option::of(any::<u64>()),
        detection_count in proptest::option::of(any::<u64>()),
        scan_duration in proptest::option::of(0u32..100_000_000),
        customer_id in nasty(),
        mssp_id in proptest::option::of(nasty()),
        agent_id in proptest::option::of(nasty()),
        installation_id in proptest::option::of(nasty()),
        extra in proptest::collection::btree_map(nasty(), nasty(), 0..4),
    ) -> ScanEvent {
        let mut e = ScanEvent::new(format!("c{customer_id}"));
        e.event_id = event_id;
        e.timestamp_ms = timestamp_ms;
        e.event_type = event_type;
        e.threat_detected = threat_detected;
        e.severity = severity;
        e.rule_ids = rule_ids;
        e.families = families;
        e.prompt_hash = prompt_hash;
        e.prompt_length = prompt_length;
        e.detection_count = detection_count;
        e.scan_duration_ms = scan_duration.map(|d| f64::from(d) / 1000.0);
        e.mssp_id = mssp_id;
        e.agent_id = agent_id;
        e.installation_id = installation_id;
        e.extra = extra
            .into_iter()
            .map(|(k, v)| (format!("x_{k}"), Value::String(v)))
            .collect();
        e
    }
}

/// A strict CEF parser: header split on unescaped pipes (exactly 7), header and extension
/// unescaping; rejects unknown escapes, raw CR/LF, and keys that are not alphanumeric.
fn parse_cef(line: &str) -> Result<(Vec<String>, BTreeMap<String, String>), String> {
    if line.contains('\n') || line.contains('\r') {
        return Err("raw CR/LF".into());
    }
    let rest = line.strip_prefix("CEF:").ok_or("no CEF: prefix")?;
    let mut header = Vec::new();
    let mut cur = String::new();
    let mut chars = rest.char_indices();
    let mut ext_start = None;
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, '\\')) => cur.push('\\'),
                Some((_, '|')) => cur.push('|'),
                other => return Err(format!("bad header escape {other:?}")),
            },
            '|' => {
                header.push(std::mem::take(&mut cur));
                if header.len() == 7 {
                    ext_start = Some(i + 1);
                    break;
                }
            }
            c => cur.push(c),
        }
    }
    let ext = &rest[ext_start.ok_or("fewer than 7 header pipes")?..];
    // Unescaped '=' positions are key delimiters.
    let bytes = ext.as_bytes();
    let mut eqs = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'=' => {
                eqs.push(i);
                i += 1
            }
            _ => i += 1,
        }
    }
    let mut fields = BTreeMap::new();
    let mut key_starts = Vec::new();
    for &eq in &eqs {
        let start = ext[..eq].rfind(' ').map_or(0, |s| s + 1);
        let key = &ext[start..eq];
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!("bad key {key:?}"));
        }
        key_starts.push((start, eq));
    }
    for (n, &(start, eq)) in key_starts.iter().enumerate() {
        let end = key_starts.get(n + 1).map_or(ext.len(), |&(s, _)| s - 1);
        let raw = &ext[eq + 1..end];
        let mut v = String::new();
        let mut cs = raw.chars();
        while let Some(c) = cs.next() {
            if c == '\\' {
                match cs.next() {
                    Some('\\') => v.push('\\'),
                    Some('=') => v.push('='),
                    Some('n') => v.push('\n'),
                    Some('r') => v.push('\r'),
                    other => return Err(format!("bad value escape {other:?}")),
                }
            } else {
                v.push(c);
            }
        }
        let key = ext[start..eq].to_string();
        if fields.insert(key.clone(), v).is_some() {
            return Err(format!("duplicate key {key}"));
        }
    }
    Ok((header, fields))
}

fn header_expect(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

fn ext_expect(s: &str) -> Option<String> {
    let t = s.trim_end_matches(' ');
    (!t.is_empty()).then(|| t.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn cef_lines_parse_back(e in scan_event(), vendor in nasty(), product in nasty(), ext_src in any::<bool>()) {
        let settings = CefSettings {
            device_vendor: vendor.clone(),
            device_product: product.clone(),
            src_field: if ext_src { CefSrcField::DeviceExternalId } else { CefSrcField::Src },
            ..Default::default()
        };
        let line = cef_line(&settings, &e);
        let (header, fields) = parse_cef(&line).map_err(|m| TestCaseError::fail(format!("{m}: {line}")))?;
        prop_assert_eq!(header.len(), 7);
        prop_assert_eq!(&header[0], "0");
        prop_assert_eq!(&header[1], &header_expect(&vendor));
        prop_assert_eq!(&header[2], &header_expect(&product));
        let sig = e.rule_ids.first().filter(|s| !s.is_empty()).cloned().unwrap_or_else(|| "scan".into());
        prop_assert_eq!(&header[4], &header_expect(&sig));
        prop_assert_eq!(header[6].parse::<u8>().unwrap(), e.severity.map_or(0, |s| s.cef()));

        let mut want = BTreeMap::new();
        want.insert("rt".to_string(), e.timestamp_ms.to_string());
        let src = if ext_src { "deviceExternalId" } else { "src" };
        let mut put = |k: &str, v: Option<String>, label: Option<&str>| {
            if let Some(v) = v.as_deref().and_then(ext_expect) {
                want.insert(k.to_string(), v);
                if let Some(l) = label { want.insert(format!("{k}Label"), l.to_string()); }
            }
        };
        put(src, e.installation_id.clone(), None);
        put("suser", e.agent_id.clone(), None);
        put("cs1", e.prompt_hash.clone(), Some("PromptHash"));
        put("cs2", Some(e.rule_ids.join(",")), Some("RuleIDs"));
        put("cs3", Some(e.families.join(",")), Some("ThreatFamilies"));
        put("cs4", Some(e.event_id.clone()), Some("EventId"));
        put("cs5", e.mssp_id.clone(), Some("MsspId"));
        put("cs6", Some(e.customer_id.clone()), Some("CustomerId"));
        // cnN are signed 64-bit longs: larger counts clamp to i64::MAX.
        let long = |v: u64| v.min(i64::MAX as u64).to_string();
        put("cn1", e.prompt_length.map(long), Some("PromptLength"));
        put("cn2", e.detection_count.map(long), Some("DetectionCount"));
        put("cn3", e.scan_duration_ms.map(|v| (v.round() as i64).to_string()), Some("ScanDurationMs"));
        prop_assert_eq!(fields, want, "{}", line);
    }

    #[test]
    fn hec_event_parses_back(e in scan_event(), host in nasty(), index in proptest::option::of(nasty())) {
        let meta = HecMeta { host: host.clone(), source: "raxe".into(), sourcetype: Some("_json".into()), index: index.clone() };
        let bytes = envelope(&meta, &e);
        prop_assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1);
        prop_assert_eq!(bytes.last(), Some(&b'\n'));
        let env: Value = serde_json::from_slice(&bytes).unwrap();
        prop_assert_eq!(env["host"].as_str(), Some(host.as_str()));
        prop_assert_eq!(env.get("index").and_then(Value::as_str), index.as_deref());
        let time = env["time"].as_f64().unwrap();
        prop_assert!((time * 1000.0 - e.timestamp_ms as f64).abs() < 1.0);
        let back = ScanEvent::parse_line(env["event"].to_string().as_bytes(), 1).unwrap();
        prop_assert_eq!(back, e);
    }

    #[test]
    fn sentinel_record_maps_back(e in scan_event()) {
        let r = record(&e);
        prop_assert_eq!(r["EventTime"].as_str().unwrap(), e.timestamp_rfc3339());
        prop_assert_eq!(r["EventId"].as_str().unwrap(), e.event_id.as_str());
        prop_assert_eq!(r["EventType"].as_str().unwrap(), e.event_type.as_str());
        prop_assert_eq!(r["ThreatDetected"].as_bool().unwrap(), e.threat_detected);
        prop_assert_eq!(r.get("Severity").and_then(Value::as_str), e.severity.map(|s| s.capitalized()));
        prop_assert_eq!(r["CustomerId"].as_str().unwrap(), e.customer_id.as_str());
        prop_assert_eq!(r.get("AgentId").and_then(Value::as_str), e.agent_id.as_deref());
        prop_assert_eq!(r.get("MsspId").and_then(Value::as_str), e.mssp_id.as_deref());
        prop_assert_eq!(r.get("InstallationId").and_then(Value::as_str), e.installation_id.as_deref());
        prop_assert_eq!(r.get("PromptHash").and_then(Value::as_str), e.prompt_hash.as_deref());
        prop_assert_eq!(r.get("PromptLength").and_then(Value::as_u64), e.prompt_length);
        prop_assert_eq!(r.get("ScanDurationMs").and_then(Value::as_f64), e.scan_duration_ms);
        if !e.rule_ids.is_empty() {
            prop_assert_eq!(&r["RuleIds"], &serde_json::json!(e.rule_ids));
        }
        for name in ["TimeGenerated", "tenant", "RawData"] {
            prop_assert!(!r.keys().any(|k| k.eq_ignore_ascii_case(name)));
        }
        for k in r.keys() {
            prop_assert!(k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "{}", k);
        }
        // Every pass-through value is present under some column.
        let values: Vec<&Value> = r.values().collect();
        for v in e.extra.values() {
            prop_assert!(values.contains(&v));
        }
    }

    #[test]
    fn queue_bytes_round_trip(e in scan_event()) {
        prop_assert_eq!(ScanEvent::from_queue_bytes(&e.to_queue_bytes()).unwrap(), e);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// `encode` puts every event of a batch in exactly one request (in order, contiguous
    /// ranges) or in `oversized`, and no body exceeds the limit.
    #[test]
    fn encode_partitions_the_batch(
        pads in proptest::collection::vec(0usize..3000, 0..40),
        limit in 600usize..6000,
    ) {
        use raxe_adapters::config::{Compression, SiemConfig, SiemOptions, SplunkOptions};
        use raxe_adapters::request::Payload;
        let config = SiemConfig::with_options(
            "https://h:8088",
            "t",
            SiemOptions::Splunk(SplunkOptions {
                compression: Compression::None,
                host: Some("h".into()),
                max_request_bytes: limit,
                ..Default::default()
            }),
        )
        .unwrap();
        let adapter = raxe_adapters::create_siem_adapter(config).unwrap();
        let batch: Vec<ScanEvent> = pads
            .iter()
            .map(|&p| {
                let mut e = ScanEvent::new("c");
                e.extra.insert("pad".into(), Value::String("x".repeat(p)));
                e
            })
            .collect();
        let encoded = adapter.encode(&batch);
        let mut seen = vec![0u8; batch.len()];
        let mut last_end = 0;
        for r in &encoded.requests {
            prop_assert!(r.events.start >= last_end && r.events.start < r.events.end);
            last_end = r.events.end;
            for i in r.events.clone() {
                seen[i] += 1;
            }
            let Payload::Http(h) = &r.payload else { panic!() };
            prop_assert!(h.body.len() <= limit);
            prop_assert_eq!(h.body.iter().filter(|&&b| b == b'\n').count(), r.events.len());
        }
        for (i, _) in &encoded.oversized {
            seen[*i] += 1;
            prop_assert!(adapter.transform_event(&batch[*i]).len() > limit);
        }
        prop_assert!(seen.iter().all(|&n| n == 1), "{:?}", seen);
    }
}
