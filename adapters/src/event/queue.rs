//! The on-disk form of one queued event: compact JSON with the time as integer
//! milliseconds (exact, no RFC 3339 round trip) and pass-through fields under `x`.
//! Decoded with a derived deserializer, which is much faster than `parse_line`.

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

/// A queued record that does not decode (corruption or a foreign format).
#[derive(Debug, thiserror::Error)]
#[error("undecodable queued event: {0}")]
pub struct QueueDecodeError(#[from] serde_json::Error);

impl ScanEvent {
    /// Compact, exact encoding for the durable queue.
    pub fn to_queue_bytes(&self) -> Vec<u8> {
        let q = QueueEvent {
            event_id: self.event_id.as_str().into(),
            timestamp_ms: self.timestamp_ms,
            event_type: self.event_type.as_str().into(),
            threat_detected: self.threat_detected,
            severity: self.severity,
            rule_ids: self.rule_ids.clone(),
            families: self.families.clone(),
            prompt_hash: self.prompt_hash.clone(),
            prompt_length: self.prompt_length,
            detection_count: self.detection_count,
            scan_duration_ms: self.scan_duration_ms,
            customer_id: self.customer_id.as_str().into(),
            mssp_id: self.mssp_id.clone(),
            agent_id: self.agent_id.clone(),
            installation_id: self.installation_id.clone(),
            extra: self.extra.clone(),
        };
        serde_json::to_vec(&q).expect("serializing a queue event cannot fail")
    }

    /// Decodes what [`ScanEvent::to_queue_bytes`] wrote.
    pub fn from_queue_bytes(bytes: &[u8]) -> Result<ScanEvent, QueueDecodeError> {
        let q: QueueEvent<'_> = serde_json::from_slice(bytes)?;
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
}
