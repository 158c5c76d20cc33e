//! The queue encodings: v2 round trips exactly, v1 records still read, bad records fail
//! with a reason and never panic.

use super::*;
use crate::test_support::{clean_event, event};

#[test]
fn v2_records_round_trip_exactly() {
    let mut odd = event(3);
    odd.timestamp_ms = 1_769_769_000_007; // sub-second digits survive
    odd.scan_duration_ms = Some(0.1 + 0.2); // shortest float form reads back equal
    odd.extra.insert("prompt".into(), "never kept".into());
    odd.extra.remove("prompt");
    for e in [event(1), clean_event(), odd] {
        let bytes = e.to_queue_bytes();
        assert_eq!(bytes[0], 0x02);
        assert_eq!(&bytes[1..9], &e.timestamp_ms.to_le_bytes());
        // The object is exactly the event's JSON (what HEC embeds).
        assert_eq!(&bytes[9..], serde_json::to_vec(&e).unwrap().as_slice());
        assert_eq!(ScanEvent::from_queue_bytes(&bytes).unwrap(), e);
        let json = JsonEvent::from_record(bytes.clone().into()).unwrap();
        assert_eq!(json.timestamp_ms(), e.timestamp_ms);
        assert_eq!(json.event().unwrap(), e);
    }
}

#[test]
fn v1_records_written_by_earlier_versions_still_decode() {
    for e in [event(1), clean_event()] {
        let v1 = to_v1_queue_bytes(&e);
        assert_eq!(v1[0], b'{');
        assert_eq!(ScanEvent::from_queue_bytes(&v1).unwrap(), e);
        let json = JsonEvent::from_record(v1.into()).unwrap();
        assert_eq!(json.json(), serde_json::to_vec(&e).unwrap().as_slice());
        assert_eq!(json.event().unwrap(), e);
    }
}

#[test]
fn damaged_records_fail_with_a_reason() {
    let good = event(1).to_queue_bytes();
    let mut not_json = good.clone();
    not_json[20] = b'\x01';
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (Vec::new(), "empty record"),
        (vec![0x7f, 1, 2], "first byte 0x7f"),
        (good[..5].to_vec(), "does not hold a JSON object"),
        (
            good[..good.len() - 1].to_vec(),
            "does not hold a JSON object",
        ),
        (b"{\"id\":".to_vec(), "EOF"),
    ];
    for (bytes, why) in cases {
        let a = ScanEvent::from_queue_bytes(&bytes).unwrap_err().to_string();
        assert!(a.contains(why), "{a}");
        let b = JsonEvent::from_record(bytes.into())
            .unwrap_err()
            .to_string();
        assert!(b.contains(why), "{b}");
    }
    // A v2 record is only checked for shape until someone needs the event itself.
    let lazily = JsonEvent::from_record(not_json.clone().into()).unwrap();
    assert!(lazily.event().is_err());
    assert!(ScanEvent::from_queue_bytes(&not_json).is_err());
}

#[test]
fn rfc3339_formatting_matches_the_time_crate() {
    use time::format_description::well_known::Rfc3339;
    let max = super::parse::MAX_TIMESTAMP_MS;
    let mut samples = vec![0, 1, 999, 1_000, 951_782_400_000, max];
    let mut x = 7u64;
    samples.extend((0..2_000).map(|_| {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        ((x >> 1) % (max as u64 + 1)) as i64
    }));
    for ms in samples {
        let ours = format_rfc3339_ms(ms);
        let parsed = time::OffsetDateTime::parse(&ours, &Rfc3339).unwrap();
        assert_eq!(
            (parsed.unix_timestamp_nanos() / 1_000_000) as i64,
            ms,
            "{ours}"
        );
        assert_eq!(ours.len(), 24);
    }
}

#[test]
fn events_built_in_code_are_checked_before_queueing() {
    assert!(event(1).check().is_ok());
    let mut blank = event(1);
    blank.customer_id = "  ".into();
    assert!(blank.check().unwrap_err().contains("customer_id"));
    let mut early = event(1);
    early.timestamp_ms = -1;
    assert!(early.check().unwrap_err().contains("1970-01-01"));
    // A pass-through field shadowing a routing field (or any interpreted one) is refused:
    // read back, it would win over the field and send the event to another customer.
    for key in ["customer_id", "mssp_id", "severity", "prompt"] {
        let mut shadowed = event(1);
        shadowed.extra.insert(key.into(), "globex".into());
        let err = shadowed.check().unwrap_err();
        assert!(err.contains(key), "{key}: {err}");
    }
}
