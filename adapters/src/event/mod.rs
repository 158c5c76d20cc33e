//! The scan event: one JSON object per event, as agents write it (protocols.md §7.1).
//!
//! [`ScanEvent::parse_line`] validates agent input and rejects with a precise message;
//! [`ScanEvent::to_queue_bytes`] / [`ScanEvent::from_queue_bytes`] are the compact, exact
//! encoding stored on disk per event. The prompt itself is never carried: only its hash
//! and length (a top-level `prompt` field sent by a misbehaving agent is dropped).

mod fields;
mod normalize;
#[cfg(test)]
mod normalize_tests;
mod parse;
mod queue;
#[cfg(test)]
mod queue_tests;
mod scan;
#[cfg(test)]
mod tests;

use std::fmt;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub(crate) use self::normalize::json_string;
pub use self::normalize::EncodedEvent;
pub use self::parse::{EventError, EventErrorKind, DROPPED_FIELD, MAX_EVENT_BYTES};
pub use self::queue::{to_v1_queue_bytes, JsonEvent, QueueDecodeError};

/// Severity of a scan result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    None,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Parses any case of `none|low|medium|high|critical`.
    pub fn parse(s: &str) -> Option<Severity> {
        const ALL: [(&str, Severity); 5] = [
            ("none", Severity::None),
            ("low", Severity::Low),
            ("medium", Severity::Medium),
            ("high", Severity::High),
            ("critical", Severity::Critical),
        ];
        ALL.iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|&(_, sev)| sev)
    }

    /// Lowercase name, as agents write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::None => "none",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Capitalised name (Sentinel records).
    pub fn capitalized(self) -> &'static str {
        match self {
            Severity::None => "None",
            Severity::Low => "Low",
            Severity::Medium => "Medium",
            Severity::High => "High",
            Severity::Critical => "Critical",
        }
    }

    /// CEF header severity (protocols.md §7.6).
    pub fn cef(self) -> u8 {
        match self {
            Severity::None => 0,
            Severity::Low => 3,
            Severity::Medium => 5,
            Severity::High => 7,
            Severity::Critical => 10,
        }
    }

    /// Syslog severity for the PRI (protocols.md §7.6).
    pub fn syslog(self) -> u8 {
        match self {
            Severity::None => 6,
            Severity::Low => 5,
            Severity::Medium => 4,
            Severity::High => 3,
            Severity::Critical => 2,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One scan event. Field names follow the agents' snake_case JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanEvent {
    /// The agent's id, or a UUIDv7 assigned at parse time when missing.
    pub event_id: String,
    /// Event time, milliseconds since the Unix epoch (UTC).
    pub timestamp_ms: i64,
    /// `"scan"` unless the agent said otherwise.
    pub event_type: String,
    pub threat_detected: bool,
    pub severity: Option<Severity>,
    pub rule_ids: Vec<String>,
    pub families: Vec<String>,
    /// `"sha256:<hex>"`.
    pub prompt_hash: Option<String>,
    pub prompt_length: Option<u64>,
    pub detection_count: Option<u64>,
    pub scan_duration_ms: Option<f64>,
    /// Required, never empty.
    pub customer_id: String,
    pub mssp_id: Option<String>,
    pub agent_id: Option<String>,
    pub installation_id: Option<String>,
    /// Every other field of the agent's object, verbatim (forwarded on JSON destinations),
    /// except [`DROPPED_FIELD`]. Sorted by key (serde_json without `preserve_order`).
    pub extra: Map<String, Value>,
}

/// The field names this crate interprets; everything else is pass-through.
pub const KNOWN_FIELDS: [&str; 15] = [
    "event_id",
    "timestamp",
    "event_type",
    "threat_detected",
    "severity",
    "rule_ids",
    "families",
    "prompt_hash",
    "prompt_length",
    "detection_count",
    "scan_duration_ms",
    "customer_id",
    "mssp_id",
    "agent_id",
    "installation_id",
];

impl ScanEvent {
    /// A minimal event (for tests and SDK callers): now, a fresh UUIDv7, type `scan`.
    pub fn new(customer_id: impl Into<String>) -> ScanEvent {
        ScanEvent {
            event_id: uuid::Uuid::now_v7().to_string(),
            timestamp_ms: now_ms(),
            event_type: "scan".to_string(),
            threat_detected: false,
            severity: None,
            rule_ids: Vec::new(),
            families: Vec::new(),
            prompt_hash: None,
            prompt_length: None,
            detection_count: None,
            scan_duration_ms: None,
            customer_id: customer_id.into(),
            mssp_id: None,
            agent_id: None,
            installation_id: None,
            extra: Map::new(),
        }
    }

    /// The event time as RFC 3339 UTC with milliseconds, e.g. `2026-01-30T10:30:00.123Z`.
    pub fn timestamp_rfc3339(&self) -> String {
        format_rfc3339_ms(self.timestamp_ms)
    }

    /// The event time as an `OffsetDateTime` (UTC). Out-of-range values clamp to the epoch.
    pub fn datetime(&self) -> time::OffsetDateTime {
        datetime_from_ms(self.timestamp_ms)
    }
}

/// Serializes as the agents' snake_case object (timestamp as RFC 3339 UTC with ms), known
/// fields first, then pass-through fields. Absent optional fields are left out.
/// `ScanEvent::parse_line` reads this back to an equal event.
impl Serialize for ScanEvent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("event_id", &self.event_id)?;
        let time = Rfc3339Ms::new(self.timestamp_ms);
        m.serialize_entry("timestamp", time.as_str())?;
        m.serialize_entry("event_type", &self.event_type)?;
        m.serialize_entry("threat_detected", &self.threat_detected)?;
        if let Some(v) = self.severity {
            m.serialize_entry("severity", v.as_str())?;
        }
        if !self.rule_ids.is_empty() {
            m.serialize_entry("rule_ids", &self.rule_ids)?;
        }
        if !self.families.is_empty() {
            m.serialize_entry("families", &self.families)?;
        }
        if let Some(v) = &self.prompt_hash {
            m.serialize_entry("prompt_hash", v)?;
        }
        if let Some(v) = self.prompt_length {
            m.serialize_entry("prompt_length", &v)?;
        }
        if let Some(v) = self.detection_count {
            m.serialize_entry("detection_count", &v)?;
        }
        if let Some(v) = self.scan_duration_ms {
            m.serialize_entry("scan_duration_ms", &v)?;
        }
        m.serialize_entry("customer_id", &self.customer_id)?;
        for (k, v) in [
            ("mssp_id", &self.mssp_id),
            ("agent_id", &self.agent_id),
            ("installation_id", &self.installation_id),
        ] {
            if let Some(v) = v {
                m.serialize_entry(k, v)?;
            }
        }
        for (k, v) in &self.extra {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as i64
}

pub(crate) fn datetime_from_ms(ms: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// `YYYY-MM-DDThh:mm:ss.mmmZ` for epoch milliseconds.
pub fn format_rfc3339_ms(ms: i64) -> String {
    Rfc3339Ms::new(ms).as_str().to_string()
}

/// An RFC 3339 time with milliseconds, formatted on the stack (serializing every event
/// writes one; `format!` cost an allocation and ~10x the time).
pub(crate) struct Rfc3339Ms([u8; 24]);

impl Rfc3339Ms {
    pub(crate) fn new(ms: i64) -> Rfc3339Ms {
        let dt = datetime_from_ms(ms);
        let mut b = *b"0000-00-00T00:00:00.000Z";
        let mut put = |at: usize, width: usize, mut value: u32| {
            for i in (at..at + width).rev() {
                b[i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        // Years outside 0..=9999 cannot occur: parsing caps the time at 9999-12-31 and
        // `datetime_from_ms` clamps anything unrepresentable to the epoch.
        put(0, 4, dt.year().clamp(0, 9999) as u32);
        put(5, 2, u8::from(dt.month()) as u32);
        put(8, 2, dt.day() as u32);
        put(11, 2, dt.hour() as u32);
        put(14, 2, dt.minute() as u32);
        put(17, 2, dt.second() as u32);
        put(20, 3, dt.millisecond() as u32);
        Rfc3339Ms(b)
    }

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ASCII digits and separators")
    }
}
