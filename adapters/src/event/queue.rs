//! The on-disk form of one queued event.
//!
//! Current format (v2): `0x02 ‖ timestamp_ms i64 LE ‖ the event's JSON object`, the object
//! exactly as [`ScanEvent`]'s `Serialize` writes it (snake_case, RFC 3339 time). Written
//! once at intake, it is spliced verbatim into destinations that embed the object (HEC's
//! `event`), so the hot path never parses or re-serializes it; the integer time beside it
//! is exact and spares those destinations the RFC 3339 parse.
//!
//! Older format (v1), still read: compact JSON starting with `{`, the time as integer
//! milliseconds and pass-through fields under `x`, decoded with a derived deserializer.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{ScanEvent, Severity};

#[derive(Serialize, Deserialize)]
struct QueueEvent<'a> {
    #[serde(rename = "id", borrow)]
    event_id: std::borrow::Cow<'a, str>,
    #[serde(rename = "ts")]
    timestamp_ms: i64,
    #[serde(rename = "ty", default = "scan", borrow)]
    event_type: std::borrow::Cow<'a, str>,
    #[serde(rename = "td", default, skip_serializing_if = "is_false")]
    threat_detected: bool,
    #[serde(rename = "sev", default, skip_serializing_if = "Option::is_none")]
    severity: Option<Severity>,
    #[serde(rename = "r", default, skip_serializing_if = "Vec::is_empty")]
    rule_ids: Vec<String>,
    #[serde(rename = "f", default, skip_serializing_if = "Vec::is_empty")]
    families: Vec<String>,
    #[serde(rename = "ph", default, skip_serializing_if = "Option::is_none")]
    prompt_hash: Option<String>,
    #[serde(rename = "pl", default, skip_serializing_if = "Option::is_none")]
    prompt_length: Option<u64>,
    #[serde(rename = "dc", default, skip_serializing_if = "Option::is_none")]
    detection_count: Option<u64>,
    #[serde(rename = "sd", default, skip_serializing_if = "Option::is_none")]
    scan_duration_ms: Option<f64>,
    #[serde(rename = "c", borrow)]
    customer_id: std::borrow::Cow<'a, str>,
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    mssp_id: Option<String>,
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    agent_id: Option<String>,
    #[serde(rename = "i", default, skip_serializing_if = "Option::is_none")]
    installation_id: Option<String>,
    #[serde(rename = "x", default, skip_serializing_if = "Map::is_empty")]
    extra: Map<String, Value>,
}

fn scan() -> std::borrow::Cow<'static, str> {
    "scan".into()
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// First byte of a v2 record (v1 records are JSON objects and start with `{`).
pub(crate) const V2_TAG: u8 = 0x02;
/// Tag and timestamp.
const V2_HEADER: usize = 9;

/// A queued record that does not decode (corruption or a foreign format).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable queued event: {0}")]
pub struct QueueDecodeError(String);

impl ScanEvent {
    /// The queue encoding (v2, see the module doc).
    pub fn to_queue_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(448);
        out.push(V2_TAG);
        out.extend_from_slice(&self.timestamp_ms.to_le_bytes());
        serde_json::to_writer(&mut out, self).expect("serializing an event cannot fail");
        out
    }

    /// Decodes a queue record of either format.
    pub fn from_queue_bytes(bytes: &[u8]) -> Result<ScanEvent, QueueDecodeError> {
        match split_v2(bytes)? {
            Some((timestamp_ms, json)) => decode_v2(timestamp_ms, json),
            None => decode_v1(bytes),
        }
    }
}

/// A queued event as its JSON object and time, without decoding it: what destinations
/// that embed the object verbatim (HEC) encode from. Cheap to clone (shared bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonEvent {
    timestamp_ms: i64,
    json: bytes::Bytes,
}

impl JsonEvent {
    /// Takes a queue record. A v2 record is only checked for shape (its chunk's CRC
    /// already vouched for its bytes); a v1 record is decoded and its object written.
    pub fn from_record(record: bytes::Bytes) -> Result<JsonEvent, QueueDecodeError> {
        match split_v2(&record)? {
            Some((timestamp_ms, _)) => Ok(JsonEvent {
                timestamp_ms,
                json: record.slice(V2_HEADER..),
            }),
            None => Ok(JsonEvent::from_event(&decode_v1(&record)?)),
        }
    }

    /// The JSON form of an event.
    pub(crate) fn from_event(event: &ScanEvent) -> JsonEvent {
        let json = serde_json::to_vec(event).expect("serializing an event cannot fail");
        JsonEvent {
            timestamp_ms: event.timestamp_ms,
            json: json.into(),
        }
    }

    /// Event time, milliseconds since the Unix epoch (UTC).
    pub fn timestamp_ms(&self) -> i64 {
        self.timestamp_ms
    }

    /// The event's JSON object (no trailing newline).
    pub fn json(&self) -> &[u8] {
        &self.json
    }

    /// Decodes the full event (for destinations that reshape it).
    pub fn event(&self) -> Result<ScanEvent, QueueDecodeError> {
        decode_v2(self.timestamp_ms, &self.json)
    }
}

/// `Some((time, object))` for a v2 record, `None` for a v1 record.
fn split_v2(bytes: &[u8]) -> Result<Option<(i64, &[u8])>, QueueDecodeError> {
    match bytes.first() {
        Some(&V2_TAG) => {
            let json = bytes.get(V2_HEADER..).unwrap_or_default();
            if json.first() != Some(&b'{') || json.last() != Some(&b'}') {
                return Err(QueueDecodeError(format!(
                    "v2 record of {} bytes does not hold a JSON object",
                    bytes.len()
                )));
            }
            let ts: [u8; 8] = bytes[1..V2_HEADER].try_into().expect("9-byte header");
            Ok(Some((i64::from_le_bytes(ts), json)))
        }
        Some(b'{') => Ok(None),
        Some(other) => Err(QueueDecodeError(format!(
            "unknown record format (first byte 0x{other:02x})"
        ))),
        None => Err(QueueDecodeError("empty record".into())),
    }
}

fn decode_v2(timestamp_ms: i64, json: &[u8]) -> Result<ScanEvent, QueueDecodeError> {
    if let Some(event) = super::normalize::decode_record_fast(json, timestamp_ms) {
        return Ok(event);
    }
    let mut event = ScanEvent::parse_line(json, 1).map_err(|e| QueueDecodeError(e.to_string()))?;
    // The header's time is the exact one (the object's RFC 3339 form has the same ms).
    event.timestamp_ms = timestamp_ms;
    Ok(event)
}

fn decode_v1(bytes: &[u8]) -> Result<ScanEvent, QueueDecodeError> {
    let q: QueueEvent<'_> =
        serde_json::from_slice(bytes).map_err(|e| QueueDecodeError(e.to_string()))?;
    Ok(ScanEvent {
        event_id: q.event_id.into_owned(),
        timestamp_ms: q.timestamp_ms,
        event_type: q.event_type.into_owned(),
        threat_detected: q.threat_detected,
        severity: q.severity,
        rule_ids: q.rule_ids,
        families: q.families,
        prompt_hash: q.prompt_hash,
        prompt_length: q.prompt_length,
        detection_count: q.detection_count,
        scan_duration_ms: q.scan_duration_ms,
        customer_id: q.customer_id.into_owned(),
        mssp_id: q.mssp_id,
        agent_id: q.agent_id,
        installation_id: q.installation_id,
        extra: q.extra,
    })
}

/// Writes the v1 encoding (kept so tests can prove old queues still deliver).
#[doc(hidden)]
pub fn to_v1_queue_bytes(event: &ScanEvent) -> Vec<u8> {
    let q = QueueEvent {
        event_id: event.event_id.as_str().into(),
        timestamp_ms: event.timestamp_ms,
        event_type: event.event_type.as_str().into(),
        threat_detected: event.threat_detected,
        severity: event.severity,
        rule_ids: event.rule_ids.clone(),
        families: event.families.clone(),
        prompt_hash: event.prompt_hash.clone(),
        prompt_length: event.prompt_length,
        detection_count: event.detection_count,
        scan_duration_ms: event.scan_duration_ms,
        customer_id: event.customer_id.as_str().into(),
        mssp_id: event.mssp_id.clone(),
        agent_id: event.agent_id.clone(),
        installation_id: event.installation_id.clone(),
        extra: event.extra.clone(),
    };
    serde_json::to_vec(&q).expect("serializing a queue event cannot fail")
}
