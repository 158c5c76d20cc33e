//! `encode_line` against its definition: `parse_line` then `to_queue_bytes`, byte for
//! byte, errors included, over hand-picked edge cases and generated lines.

use super::normalize::encode_line_fast;
use super::*;

/// The definition `encode_line` must match.
fn reference(line: &str) -> Result<Vec<u8>, EventError> {
    ScanEvent::parse_line(line.as_bytes(), 3).map(|e| e.to_queue_bytes())
}

/// Which one-pass readers took the line; each one that did must give the reference bytes.
fn readers(line: &str) -> (bool, bool) {
    let reference = reference(line).ok();
    let scanned = super::scan::scan(line.as_bytes()).and_then(|f| f.encode());
    let serde = serde_json::from_slice::<super::normalize::Fast<'_>>(line.as_bytes())
        .ok()
        .and_then(|f| f.encode());
    for (name, got) in [("scanner", &scanned), ("serde", &serde)] {
        if let Some(got) = got {
            assert_eq!(Some(&got.record), reference.as_ref(), "{name}: line {line}");
        }
    }
    (scanned.is_some(), serde.is_some())
}

fn check(line: &str) -> bool {
    let _ = readers(line);
    let ours = ScanEvent::encode_line(line.as_bytes(), 3);
    match (&ours, reference(line)) {
        (Ok(a), Ok(b)) => {
            assert_eq!(
                String::from_utf8_lossy(&a.record[9..]),
                String::from_utf8_lossy(&b[9..]),
                "line {line}"
            );
            assert_eq!(a.record, b, "line {line}");
            let event = ScanEvent::from_queue_bytes(&b).unwrap();
            // Both one-pass readers of a record, where they take it, give the same event.
            let json = &b[9..];
            let scanned = super::scan::scan_record(json, event.timestamp_ms)
                .and_then(|f| f.into_event(event.timestamp_ms));
            let serde = serde_json::from_slice::<super::normalize::Fast<'_>>(json)
                .ok()
                .and_then(|f| f.into_event(event.timestamp_ms));
            for got in [&scanned, &serde].into_iter().flatten() {
                assert_eq!(got, &event, "line {line}");
            }
            // The one-pass decode of the record gives what `parse_line` gives.
            let mut parsed = ScanEvent::parse_line(&b[9..], 1).unwrap();
            parsed.timestamp_ms = event.timestamp_ms;
            assert_eq!(event, parsed, "line {line}");
            assert_eq!(a.customer_id, event.customer_id);
            assert_eq!(a.mssp_id, event.mssp_id);
        }
        (Err(a), Err(b)) => assert_eq!(a, &b, "line {line}"),
        (a, b) => panic!("line {line}: encode_line {a:?}, parse_line {b:?}"),
    }
    encode_line_fast(line.as_bytes()).is_some()
}

const BASE: &str = r#""event_id":"e-1","timestamp":"2026-01-30T10:30:00.123Z","customer_id":"c""#;

#[test]
fn typical_agent_lines_take_the_fast_pass_with_identical_bytes() {
    let typical = [
        r#"{"event_id":"evt-1","timestamp":"2026-01-30T10:30:00.123Z","event_type":"scan","threat_detected":true,"severity":"critical","rule_ids":["pi-001","pi-003"],"families":["PI"],"prompt_hash":"sha256:abc","prompt_length":42,"detection_count":2,"scan_duration_ms":4.5,"customer_id":"cust_acme","mssp_id":"m","agent_id":"a","installation_id":"i"}"#.to_string(),
        format!("{{{BASE}}}"),
        format!("{{{BASE},\"severity\":\"HIGH\",\"threat_detected\":false}}"),
        format!("{{{BASE},\"rule_ids\":[],\"families\":[]}}"),
        format!("{{{BASE},\"prompt\":{{\"text\":\"secret\",\"n\":[1,2]}},\"model\":\"gpt\"}}"),
        format!("{{ {BASE} , \"scan_duration_ms\" : 7 }}\n"),
        format!("{{{BASE},\"scan_duration_ms\":0.1,\"prompt_length\":0}}"),
        format!("{{{BASE},\"esc\":\"a\\\"b\\\\c\\n\\u00e9\\ud83d\\ude00\",\"raw\":\"é😀\"}}"),
        format!("{{{BASE},\"z\":1,\"a\":-2,\"m\":1.0,\"e\":1e3,\"big\":18446744073709551616,\"t\":true,\"n\":null,\"neg0\":-0,\"ms\":-0.0}}"),
        format!("{{{BASE},\"nested\":{{\"b\":[1,{{\"c\":null}}],\"a\":\"x\"}},\"list\":[\"a\",1,2.5]}}"),
        format!("{{{BASE},\"k\\u0065y\":\"escaped key\",\"agent\\u005fid\":\"known via escape\"}}"),
        r#"{"customer_id":"c","event_id":"e","timestamp":1769769000}"#.to_string(),
        r#"{"customer_id":"c","event_id":"e","timestamp":1769769000123}"#.to_string(),
        r#"{"customer_id":"c","event_id":"e","timestamp":1769769000.5}"#.to_string(),
        r#"{"customer_id":"c","event_id":"e","timestamp":"2026-01-30T12:30:00.123456+02:00"}"#.to_string(),
        r#"{"customer_id":"c","event_id":"e","timestamp":"2026-01-30t10:30:00z"}"#.to_string(),
    ];
    for line in &typical {
        assert!(check(line), "fast pass not taken for {line}");
    }
    // The hand-written scanner takes the usual shape; escapes and nesting go to serde.
    assert_eq!(readers(&typical[0]), (true, true));
    assert_eq!(readers(&typical[1]), (true, true));
    assert_eq!(readers(&typical[7]), (false, true), "escapes");
    assert_eq!(readers(&typical[9]), (false, true), "nested extras");
    assert_eq!(readers(&typical[8]), (true, true), "every scalar kind");
    // The queued form of the usual shape is read back by the scanner too.
    let record = reference(&typical[0]).unwrap();
    assert!(super::scan::scan(&record[9..]).is_some());
    assert!(super::scan::scan_record(&record[9..], 0).is_some());
}

#[test]
fn unusual_lines_fall_back_and_still_match() {
    let fallback = [
        format!("{{{BASE},\"severity\":null}}"),
        format!("{{{BASE},\"prompt_length\":12.0}}"),
        format!("{{{BASE},\"agent_id\":\"a\",\"agent_id\":\"b\"}}"),
        format!("{{{BASE},\"x\":1,\"x\":2}}"),
        format!("{{{BASE},\"severity\":\"urgent\"}}"),
        format!("{{{BASE},\"threat_detected\":\"yes\"}}"),
        format!("{{{BASE},\"rule_ids\":[\"a\",1]}}"),
        format!("{{{BASE},\"prompt_length\":-1}}"),
        r#"{"event_id":"e","timestamp":"2026-01-30T10:30:00Z","customer_id":"  "}"#.to_string(),
        r#"{"event_id":"e","timestamp":"2026-01-30T10:30:00Z"}"#.to_string(),
        r#"{"event_id":"e","timestamp":"yesterday","customer_id":"c"}"#.to_string(),
        r#"{"event_id":"e","timestamp":-5,"customer_id":"c"}"#.to_string(),
        r#"{"event_id":"e","timestamp":null,"customer_id":"c","x":1}"#.to_string(),
        r#"[1,2]"#.to_string(),
        r#"{"customer_id":"c""#.to_string(),
        r#"{"customer_id":"c"} trailing"#.to_string(),
        "not json".to_string(),
    ];
    for line in &fallback {
        if line.contains("\"timestamp\":null") {
            // Time is "now" on both paths: compare all but the time.
            let a = ScanEvent::encode_line(line.as_bytes(), 3).unwrap();
            assert!(encode_line_fast(line.as_bytes()).is_none());
            let mut b = ScanEvent::from_queue_bytes(&a.record).unwrap();
            b.timestamp_ms = 0;
            assert_eq!(b.extra["x"], 1);
            continue;
        }
        assert!(!check(line), "fast pass taken for {line}");
    }
}

#[test]
fn missing_id_and_time_are_generated_on_the_fast_pass_too() {
    let before = now_ms();
    let a = ScanEvent::encode_line(br#"{"customer_id":"c"}"#, 1).unwrap();
    assert!(encode_line_fast(br#"{"customer_id":"c"}"#).is_some());
    let event = ScanEvent::from_queue_bytes(&a.record).unwrap();
    assert!(uuid::Uuid::parse_str(&event.event_id).is_ok());
    assert!(event.timestamp_ms >= before && event.timestamp_ms <= now_ms());
    assert_eq!(event.event_type, "scan");
    assert_eq!(a.record, event.to_queue_bytes());
}

/// An empty or blank `event_id` would make a SIEM take every such event for one: at
/// intake it gets a fresh id, as a missing one does, on both passes (the second line takes
/// the full one). A queued record keeps whatever id it has: every decode gives the same.
#[test]
fn a_blank_id_is_replaced_at_intake_like_a_missing_one() {
    for line in [
        r#"{"customer_id":"c","event_id":""}"#,
        r#"{"customer_id":"c","event_id":"  ","x":1,"x":2}"#,
    ] {
        let full_pass = line.contains(r#""x":2"#);
        assert_eq!(encode_line_fast(line.as_bytes()).is_none(), full_pass);
        let a = ScanEvent::encode_line(line.as_bytes(), 1).unwrap();
        let event = ScanEvent::from_queue_bytes(&a.record).unwrap();
        assert!(uuid::Uuid::parse_str(&event.event_id).is_ok(), "{line}");
        assert_eq!(ScanEvent::from_queue_bytes(&a.record).unwrap(), event);
    }
    let queued = ScanEvent::parse_line(br#"{"customer_id":"c","event_id":""}"#, 1).unwrap();
    let record = queued.to_queue_bytes();
    assert_eq!(ScanEvent::from_queue_bytes(&record).unwrap().event_id, "");
}

/// xorshift: a value below `n`.
fn next(x: &mut u64, n: u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x % n
}

/// Mostly one of the first `valid` choices (values every field accepts), sometimes any.
fn pick(x: &mut u64, valid: usize, all: usize) -> usize {
    if next(x, 10) < 9 {
        next(x, valid as u64) as usize
    } else {
        next(x, all as u64) as usize
    }
}

#[test]
fn generated_lines_match_byte_for_byte() {
    let x = &mut 0x2545_f491_4f6c_dd1du64;
    // Escape-free strings first: most lines then suit the hand-written scanner; the
    // escaped ones (and wrong types) come in through `pick`'s "any" branch.
    let strings = [
        "\"plain\"",
        "\"é😀\"",
        "\"\"",
        "\"tab\\there\"",
        "\"q\\\"uote\"",
        "\"\\u0000ctl\"",
        "\" \"",
        "null",
        "1",
        "[\"a\"]",
    ];
    let numbers = [
        "0", "7", "-3", "2.5", "1e2", "12.0", "null", "\"9\"", "1e400",
    ];
    let floats = ["2.5", "0.1", "7", "1e2", "-3", "-0", "null", "\"9\""];
    let times = [
        "\"2026-01-30T10:30:00Z\"",
        "\"2026-01-30T10:30:00.999999999Z\"",
        "1769769000",
        "1769769000999",
        "\"bad\"",
        "1e300",
    ];
    let (mut fast, mut scanned) = (0, 0);
    for i in 0..3_000 {
        let mut parts = vec![format!("\"event_id\":\"g-{i}\"")];
        parts.push(format!("\"timestamp\":{}", times[pick(x, 4, times.len())]));
        let mut s = |k: &str| format!("\"{k}\":{}", strings[pick(x, 3, strings.len())]);
        let mut optional = vec![
            s("customer_id"),
            s("event_type"),
            s("prompt_hash"),
            s("mssp_id"),
            s("agent_id"),
            s("installation_id"),
            s("extra_s"),
        ];
        for k in ["prompt_length", "detection_count", "extra_n"] {
            optional.push(format!("\"{k}\":{}", numbers[pick(x, 2, numbers.len())]));
        }
        optional.push(format!(
            "\"scan_duration_ms\":{}",
            floats[pick(x, 5, floats.len())]
        ));
        optional.push(format!(
            "\"threat_detected\":{}",
            ["true", "false", "1"][pick(x, 2, 3)]
        ));
        optional.push(format!(
            "\"severity\":{}",
            ["\"low\"", "\"MEDIUM\"", "\"x\""][pick(x, 2, 3)]
        ));
        optional.push(format!(
            "\"rule_ids\":[{}]",
            ["", "\"a\"", "\"a\",\"b\\n\"", "1"][pick(x, 3, 4)]
        ));
        optional.push(format!(
            "\"prompt\":{}",
            strings[next(x, strings.len() as u64) as usize]
        ));
        // A customer most of the time, so that most lines are valid.
        if next(x, 10) > 0 {
            optional[0] = "\"customer_id\":\"cust\"".to_string();
        }
        for part in optional {
            if next(x, 3) > 0 {
                parts.push(part);
            }
        }
        let len = parts.len();
        for j in (3..len).rev() {
            let k = 2 + next(x, (j - 1) as u64) as usize;
            parts.swap(j, k);
        }
        let line = format!("{{{}}}", parts.join(","));
        if check(&line) {
            fast += 1;
        }
        if readers(&line).0 {
            scanned += 1;
        }
    }
    assert!(
        scanned > 500,
        "only {scanned} generated lines were scanned by hand"
    );
    assert!(
        fast > 1_000,
        "only {fast} of 3000 generated lines took the fast pass"
    );
}
