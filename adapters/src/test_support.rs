//! Fixtures shared by unit tests.

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use crate::event::ScanEvent;
use crate::request::HttpResponse;

/// The §7 example event.
pub fn event(n: usize) -> ScanEvent {
    let line = format!(
        r#"{{"event_id":"evt-{n}","timestamp":"2026-01-30T10:30:00.123Z","event_type":"scan","threat_detected":true,"severity":"critical","rule_ids":["pi-001","pi-003"],"families":["PI"],"prompt_hash":"sha256:abc123","prompt_length":42,"detection_count":2,"scan_duration_ms":4.5,"customer_id":"cust_acme","mssp_id":"mssp_1","agent_id":"agent_prod_001","installation_id":"inst_abc123","model":"gpt-x"}}"#
    );
    ScanEvent::parse_line(line.as_bytes(), n).unwrap()
}

/// A clean scan with whole-second time and no optional fields.
pub fn clean_event() -> ScanEvent {
    ScanEvent::parse_line(
        br#"{"event_id":"evt-clean","timestamp":1751371200,"customer_id":"cust_acme"}"#,
        1,
    )
    .unwrap()
}

pub fn resp(status: u16, body: &str) -> HttpResponse {
    HttpResponse {
        status: StatusCode::from_u16(status).unwrap(),
        headers: HeaderMap::new(),
        body: Bytes::from(body.to_string()),
    }
}

pub fn resp_with(status: u16, body: &str, header: (&'static str, &str)) -> HttpResponse {
    let mut r = resp(status, body);
    r.headers.insert(header.0, header.1.parse().unwrap());
    r
}

pub fn gunzip(b: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .unwrap();
    out
}
