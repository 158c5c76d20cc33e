//! Parsing one agent line into a [`ScanEvent`], with precise rejections.

use std::fmt;

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;

use super::fields::Fields;
use super::{now_ms, ScanEvent, Severity};

/// Largest accepted event line, in bytes (1 MiB).
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// A top-level field never forwarded, whatever the agent sends.
pub const DROPPED_FIELD: &str = "prompt";

/// Latest representable event time: 9999-12-31T23:59:59.999Z.
pub(crate) const MAX_TIMESTAMP_MS: i64 = 253_402_300_799_999;

/// Why a line was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventErrorKind {
    /// Over [`MAX_EVENT_BYTES`].
    TooLarge,
    /// Not valid JSON (or not UTF-8).
    InvalidJson,
    /// Valid JSON, but not an object.
    NotAnObject,
    /// `customer_id` absent or null.
    MissingCustomerId,
    /// `customer_id` is `""` (or only whitespace).
    EmptyCustomerId,
    /// A known field has the wrong JSON type.
    WrongType,
    /// `severity` is not none|low|medium|high|critical.
    UnknownSeverity,
    /// `timestamp` is a string that is not RFC 3339, or a number out of range.
    InvalidTimestamp,
}

/// A rejected event line: which line, which field, what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {}{message}", field.map(|f| format!("field `{f}`: ")).unwrap_or_default())]
pub struct EventError {
    /// 1-based line number as given by the caller.
    pub line: usize,
    pub kind: EventErrorKind,
    /// The offending field, when one is to blame.
    pub field: Option<&'static str>,
    /// Human-readable detail: what was expected and what was found.
    pub message: String,
}

impl ScanEvent {
    /// Parses one JSON object (one line of an agent's spool file). `line_no` only labels
    /// errors. Unknown fields are kept verbatim in `extra`; `null` counts as absent.
    pub fn parse_line(line: &[u8], line_no: usize) -> Result<ScanEvent, EventError> {
        let err = |kind, field, message: String| EventError {
            line: line_no,
            kind,
            field,
            message,
        };
        if line.len() > MAX_EVENT_BYTES {
            return Err(err(
                EventErrorKind::TooLarge,
                None,
                format!(
                    "event is {} bytes, the limit is {MAX_EVENT_BYTES} bytes (1 MiB)",
                    line.len()
                ),
            ));
        }
        // Fast path: known fields go straight into slots, with no map of their own.
        if let Ok(fields) = serde_json::from_slice::<Fields>(line) {
            return Self::from_fields(fields)
                .map_err(|(kind, field, message)| err(kind, field, message));
        }
        // Not a JSON object, or not JSON: parse again to say precisely why.
        let value: Value = serde_json::from_slice(line).map_err(|e| {
            err(
                EventErrorKind::InvalidJson,
                None,
                format!("invalid JSON: {e}"),
            )
        })?;
        let Value::Object(map) = value else {
            return Err(err(
                EventErrorKind::NotAnObject,
                None,
                format!("expected a JSON object, got {}", type_name(&value)),
            ));
        };
        Self::from_map(map).map_err(|(kind, field, message)| err(kind, field, message))
    }

    /// Checks an event built in code (not parsed) against the rules `parse_line` applies,
    /// so that what is queued always reads back: a non-blank `customer_id` and a time
    /// between 1970-01-01 and 9999-12-31.
    pub fn check(&self) -> Result<(), String> {
        if self.customer_id.trim().is_empty() {
            return Err(format!(
                "event {:?}: customer_id must not be empty",
                self.event_id
            ));
        }
        in_range(self.timestamp_ms)
            .map_err(|(_, _, reason)| format!("event {:?}: {reason}", self.event_id))?;
        // A pass-through field named like one we interpret would be written after it and
        // win when the record is read back: routing (by `customer_id`, `mssp_id`) would
        // then disagree between the first dispatch and a later re-route.
        if let Some(key) = self.extra.keys().find(|k| Fields::is_own(k)) {
            return Err(format!(
                "event {:?}: pass-through field {key:?} is one of the event's own fields; set the field itself",
                self.event_id
            ));
        }
        Ok(())
    }

    /// Builds an event from an already parsed JSON object (same rules as `parse_line`).
    pub fn from_json_object(
        map: Map<String, Value>,
        line_no: usize,
    ) -> Result<ScanEvent, EventError> {
        Self::from_map(map).map_err(|(kind, field, message)| EventError {
            line: line_no,
            kind,
            field,
            message,
        })
    }

    fn from_map(map: Map<String, Value>) -> Result<ScanEvent, Fail> {
        Self::from_fields(Fields::from_map(map))
    }

    fn from_fields(mut fields: Fields) -> Result<ScanEvent, Fail> {
        let map = &mut fields;
        let customer_id = match take(map, "customer_id") {
            None => {
                return Err((
                    EventErrorKind::MissingCustomerId,
                    Some("customer_id"),
                    "missing (every event needs a customer_id)".into(),
                ))
            }
            Some(v) => string("customer_id", v)?,
        };
        if customer_id.trim().is_empty() {
            return Err((
                EventErrorKind::EmptyCustomerId,
                Some("customer_id"),
                "must not be empty".into(),
            ));
        }
        let event_id = match take(map, "event_id") {
            Some(v) => string("event_id", v)?,
            None => uuid::Uuid::now_v7().to_string(),
        };
        let timestamp_ms = match take(map, "timestamp") {
            Some(v) => timestamp(v)?,
            None => now_ms(),
        };
        let event_type = match take(map, "event_type") {
            Some(v) => string("event_type", v)?,
            None => "scan".to_string(),
        };
        let threat_detected = match take(map, "threat_detected") {
            Some(Value::Bool(b)) => b,
            Some(other) => return Err(wrong("threat_detected", "a boolean", &other)),
            None => false,
        };
        let severity = match take(map, "severity") {
            Some(Value::String(s)) => Some(Severity::parse(&s).ok_or_else(|| {
                (
                    EventErrorKind::UnknownSeverity,
                    Some("severity"),
                    format!(
                        "expected one of none, low, medium, high, critical (any case), got {:?}",
                        shorten(&s)
                    ),
                )
            })?),
            Some(other) => return Err(wrong("severity", "a string", &other)),
            None => None,
        };
        let rule_ids = opt(map, "rule_ids", strings)?.unwrap_or_default();
        let families = opt(map, "families", strings)?.unwrap_or_default();
        let prompt_hash = opt(map, "prompt_hash", string)?;
        let prompt_length = opt(map, "prompt_length", uint)?;
        let detection_count = opt(map, "detection_count", uint)?;
        let scan_duration_ms = opt(map, "scan_duration_ms", number)?;
        let mssp_id = opt(map, "mssp_id", string)?;
        let agent_id = opt(map, "agent_id", string)?;
        let installation_id = opt(map, "installation_id", string)?;
        Ok(ScanEvent {
            event_id,
            timestamp_ms,
            event_type,
            threat_detected,
            severity,
            rule_ids,
            families,
            prompt_hash,
            prompt_length,
            detection_count,
            scan_duration_ms,
            customer_id,
            mssp_id,
            agent_id,
            installation_id,
            extra: fields.extra,
        })
    }
}

pub(crate) type Fail = (EventErrorKind, Option<&'static str>, String);

fn take(fields: &mut Fields, key: &str) -> Option<Value> {
    match fields.take(key) {
        Some(Value::Null) | None => None,
        some => some,
    }
}

fn opt<T>(
    map: &mut Fields,
    key: &'static str,
    f: fn(&'static str, Value) -> Result<T, Fail>,
) -> Result<Option<T>, Fail> {
    take(map, key).map(|v| f(key, v)).transpose()
}

fn wrong(field: &'static str, expected: &str, got: &Value) -> Fail {
    (
        EventErrorKind::WrongType,
        Some(field),
        format!("expected {expected}, got {}", type_name(got)),
    )
}

fn string(field: &'static str, v: Value) -> Result<String, Fail> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(wrong(field, "a string", &other)),
    }
}

fn strings(field: &'static str, v: Value) -> Result<Vec<String>, Fail> {
    match v {
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => Ok(s),
                other => Err(wrong(field, "an array of strings", &other)),
            })
            .collect(),
        other => Err(wrong(field, "an array of strings", &other)),
    }
}

fn uint(field: &'static str, v: Value) -> Result<u64, Fail> {
    match &v {
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                return Ok(u);
            }
            // Accept integral floats such as 12.0.
            match n.as_f64() {
                Some(f) if f >= 0.0 && f.fract() == 0.0 && f < 1.8e19 => Ok(f as u64),
                _ => Err((
                    EventErrorKind::WrongType,
                    Some(field),
                    format!("expected a non-negative integer, got {n}"),
                )),
            }
        }
        other => Err(wrong(field, "a non-negative integer", other)),
    }
}

fn number(field: &'static str, v: Value) -> Result<f64, Fail> {
    match &v {
        Value::Number(n) => Ok(n.as_f64().unwrap_or(0.0)),
        other => Err(wrong(field, "a number", other)),
    }
}

/// RFC 3339 string, or epoch seconds (< 1e11) / milliseconds (>= 1e11) as a number.
pub(crate) fn timestamp(v: Value) -> Result<i64, Fail> {
    let bad = |message: String| (EventErrorKind::InvalidTimestamp, Some("timestamp"), message);
    let ms = match &v {
        Value::String(s) => return timestamp_str(s),
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            let ms = if f.abs() < 1e11 { f * 1000.0 } else { f };
            if !ms.is_finite() || ms.abs() > 1e16 {
                return Err(bad(format!("epoch time {n} is out of range")));
            }
            match n.as_i64() {
                Some(i) if i.abs() >= 100_000_000_000 => i,
                Some(i) => i * 1000,
                None => ms.round() as i64,
            }
        }
        other => {
            return Err(wrong(
                "timestamp",
                "an RFC 3339 string or epoch seconds/milliseconds",
                other,
            ))
        }
    };
    in_range(ms)
}

/// [`timestamp`] of a string, borrowed (the intake scanner's form).
pub(crate) fn timestamp_str(s: &str) -> Result<i64, Fail> {
    let dt = time::OffsetDateTime::parse(s, &Rfc3339).map_err(|e| {
        (
            EventErrorKind::InvalidTimestamp,
            Some("timestamp"),
            format!(
                "expected an RFC 3339 time such as 2026-01-30T10:30:00Z, got {:?} ({e})",
                shorten(s)
            ),
        )
    })?;
    in_range((dt.unix_timestamp_nanos() / 1_000_000) as i64)
}

fn in_range(ms: i64) -> Result<i64, Fail> {
    if !(0..=MAX_TIMESTAMP_MS).contains(&ms) {
        return Err((
            EventErrorKind::InvalidTimestamp,
            Some("timestamp"),
            format!("time must lie between 1970-01-01 and 9999-12-31, got {ms} ms since the epoch"),
        ));
    }
    Ok(ms)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn shorten(s: &str) -> String {
    if s.chars().count() <= 64 {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(64).collect();
        t.push('…');
        t
    }
}

impl fmt::Display for EventErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
