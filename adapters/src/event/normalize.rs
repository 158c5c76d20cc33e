//! Agent line → queue record in one pass, for the lines agents normally write.
//!
//! [`ScanEvent::encode_line`] promises exactly the bytes of `ScanEvent::parse_line(line)?`
//! with [`ScanEvent::fill_blank_id`], then `to_queue_bytes()`, and the same error for a bad
//! line (a fresh id aside: two intakes of one line without an id differ by it), at
//! roughly a third of the cost: strings without escapes stay borrowed from the line, no
//! `serde_json::Value` is built for known fields, no `ScanEvent` is allocated. Whatever the
//! fast pass does not handle exactly as `parse_line` would (a `null` or duplicate key, a
//! float where an integer goes, a wrong type, a blank `customer_id`, invalid JSON) makes it
//! give up, and the line takes the full path, which also words any error.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::fields::CowStr;
use super::parse::{timestamp, DROPPED_FIELD, MAX_EVENT_BYTES};
use super::queue::V2_TAG;
use super::{now_ms, Rfc3339Ms, ScanEvent, Severity};

/// One event ready for the queues: its record (see `to_queue_bytes`) and the keys routing
/// needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedEvent {
    pub record: Vec<u8>,
    pub customer_id: String,
    pub mssp_id: Option<String>,
}

impl ScanEvent {
    /// This event as [`EncodedEvent`].
    pub fn to_encoded(&self) -> EncodedEvent {
        EncodedEvent {
            record: self.to_queue_bytes(),
            customer_id: self.customer_id.clone(),
            mssp_id: self.mssp_id.clone(),
        }
    }

    /// [`ScanEvent::parse_line`] then [`ScanEvent::to_queue_bytes`]: the same bytes and
    /// the same errors, in one pass when the line allows it: the intake of an agent's line
    /// (see [`ScanEvent::fill_blank_id`]).
    pub fn encode_line(line: &[u8], line_no: usize) -> Result<EncodedEvent, super::EventError> {
        if let Some(encoded) = encode_line_fast(line) {
            return Ok(encoded);
        }
        ScanEvent::parse_line(line, line_no).map(|mut event| {
            event.fill_blank_id();
            event.to_encoded()
        })
    }

    /// At the intake of an agent's line: an empty or blank `event_id` is replaced by a
    /// fresh one, as a missing one is (`parse_line` keeps what it reads, and so does the
    /// decoding of a queued record, so resends carry the same id).
    pub fn fill_blank_id(&mut self) {
        if blank_id(&self.event_id) {
            self.event_id = uuid::Uuid::now_v7().to_string();
        }
    }
}

/// The one-pass encoding, or `None` when the line needs the full path.
#[doc(hidden)]
pub(crate) fn encode_line_fast(line: &[u8]) -> Option<EncodedEvent> {
    if line.len() > MAX_EVENT_BYTES {
        return None;
    }
    // The hand-written scanner takes the common shape; serde the rest it can.
    if let Some(encoded) = super::scan::scan(line).and_then(Fast::encode) {
        return Some(encoded);
    }
    let fields = serde_json::from_slice::<Fast<'_>>(line).ok()?;
    fields.encode()
}

/// Decodes the JSON object of a v2 queue record in one pass (`None`: use `parse_line`).
pub(crate) fn decode_record_fast(json: &[u8], timestamp_ms: i64) -> Option<ScanEvent> {
    // Records are serde_json's output: the scanner takes every one without an escape or a
    // nested value, in about a third of serde's time.
    let scanned = super::scan::scan_record(json, timestamp_ms);
    if let Some(event) = scanned.and_then(|f| f.into_event(timestamp_ms)) {
        return Some(event);
    }
    serde_json::from_slice::<Fast<'_>>(json)
        .ok()?
        .into_event(timestamp_ms)
}

/// The fields of one line, borrowed from it where possible.
#[derive(Default)]
pub(crate) struct Fast<'a> {
    pub(crate) event_id: Option<Cow<'a, str>>,
    pub(crate) timestamp_ms: Option<i64>,
    pub(crate) event_type: Option<Cow<'a, str>>,
    pub(crate) threat_detected: Option<bool>,
    pub(crate) severity: Option<Severity>,
    pub(crate) rule_ids: Option<Vec<Cow<'a, str>>>,
    pub(crate) families: Option<Vec<Cow<'a, str>>>,
    pub(crate) prompt_hash: Option<Cow<'a, str>>,
    pub(crate) prompt_length: Option<u64>,
    pub(crate) detection_count: Option<u64>,
    pub(crate) scan_duration_ms: Option<f64>,
    pub(crate) customer_id: Option<Cow<'a, str>>,
    pub(crate) mssp_id: Option<Cow<'a, str>>,
    pub(crate) agent_id: Option<Cow<'a, str>>,
    pub(crate) installation_id: Option<Cow<'a, str>>,
    pub(crate) extra: Vec<(Cow<'a, str>, Extra<'a>)>,
}

/// A pass-through field's value.
pub(crate) enum Extra<'a> {
    Str(Cow<'a, str>),
    Other(Value),
}

impl Fast<'_> {
    /// The event `parse_line` would build from the same object, with this time.
    pub(crate) fn into_event(mut self, timestamp_ms: i64) -> Option<ScanEvent> {
        let customer_id = self.customer_id.take()?;
        if customer_id.trim().is_empty() || self.event_id.is_none() {
            return None;
        }
        let mut extra = serde_json::Map::new();
        for (key, value) in self.extra {
            let value = match value {
                Extra::Str(s) => Value::String(s.into_owned()),
                Extra::Other(v) => v,
            };
            if extra.insert(key.into_owned(), value).is_some() {
                return None;
            }
        }
        let owned = |v: Option<Cow<'_, str>>| v.map(Cow::into_owned);
        let list = |v: Option<Vec<Cow<'_, str>>>| {
            v.unwrap_or_default()
                .into_iter()
                .map(Cow::into_owned)
                .collect()
        };
        Some(ScanEvent {
            event_id: owned(self.event_id)?,
            timestamp_ms,
            event_type: owned(self.event_type).unwrap_or_else(|| "scan".to_string()),
            threat_detected: self.threat_detected.unwrap_or(false),
            severity: self.severity,
            rule_ids: list(self.rule_ids),
            families: list(self.families),
            prompt_hash: owned(self.prompt_hash),
            prompt_length: self.prompt_length,
            detection_count: self.detection_count,
            scan_duration_ms: self.scan_duration_ms,
            customer_id: customer_id.into_owned(),
            mssp_id: owned(self.mssp_id),
            agent_id: owned(self.agent_id),
            installation_id: owned(self.installation_id),
            extra,
        })
    }

    pub(crate) fn encode(mut self) -> Option<EncodedEvent> {
        let customer_id = self.customer_id.take()?;
        if customer_id.trim().is_empty() {
            return None;
        }
        // A pass-through map keeps the last of duplicate keys; leave that to the full path.
        self.extra.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if self.extra.windows(2).any(|w| w[0].0 == w[1].0) {
            return None;
        }
        let event_id = match self.event_id.take() {
            Some(id) if !blank_id(&id) => id,
            _ => Cow::Owned(uuid::Uuid::now_v7().to_string()),
        };
        let timestamp_ms = self.timestamp_ms.unwrap_or_else(now_ms);

        let mut out = Vec::with_capacity(512);
        out.push(V2_TAG);
        out.extend_from_slice(&timestamp_ms.to_le_bytes());
        // Field order and forms as in `ScanEvent`'s `Serialize`.
        out.extend_from_slice(b"{\"event_id\":");
        json_string(&event_id, &mut out);
        out.extend_from_slice(b",\"timestamp\":");
        json_string(Rfc3339Ms::new(timestamp_ms).as_str(), &mut out);
        out.extend_from_slice(b",\"event_type\":");
        json_string(self.event_type.as_deref().unwrap_or("scan"), &mut out);
        out.extend_from_slice(b",\"threat_detected\":");
        json(&self.threat_detected.unwrap_or(false), &mut out);
        if let Some(severity) = self.severity {
            field_str("severity", severity.as_str(), &mut out);
        }
        for (name, list) in [("rule_ids", &self.rule_ids), ("families", &self.families)] {
            if let Some(list) = list.as_ref().filter(|l| !l.is_empty()) {
                key(name, &mut out);
                for (i, item) in list.iter().enumerate() {
                    out.push(if i == 0 { b'[' } else { b',' });
                    json_string(item, &mut out);
                }
                out.push(b']');
            }
        }
        if let Some(v) = &self.prompt_hash {
            field_str("prompt_hash", v, &mut out);
        }
        if let Some(v) = self.prompt_length {
            field("prompt_length", &v, &mut out);
        }
        if let Some(v) = self.detection_count {
            field("detection_count", &v, &mut out);
        }
        if let Some(v) = self.scan_duration_ms {
            field("scan_duration_ms", &v, &mut out);
        }
        field_str("customer_id", &customer_id, &mut out);
        for (name, v) in [
            ("mssp_id", &self.mssp_id),
            ("agent_id", &self.agent_id),
            ("installation_id", &self.installation_id),
        ] {
            if let Some(v) = v {
                field_str(name, v, &mut out);
            }
        }
        for (key, value) in &self.extra {
            out.push(b',');
            json_string(key, &mut out);
            out.push(b':');
            match value {
                Extra::Str(s) => json_string(s, &mut out),
                Extra::Other(v) => json(v, &mut out),
            }
        }
        out.push(b'}');
        Some(EncodedEvent {
            record: out,
            customer_id: customer_id.into_owned(),
            mssp_id: self.mssp_id.map(Cow::into_owned),
        })
    }
}

fn json<T: serde::Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, value).expect("writing JSON to a Vec cannot fail");
}

/// A JSON string as serde_json writes it: a string with nothing to escape (no `"`, `\`
/// or control character; the common case) is copied as is, the rest goes to serde_json.
pub(crate) fn json_string(s: &str, out: &mut Vec<u8>) {
    if super::scan::plain_run(s.as_bytes()) == s.len() {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        json(s, out);
    }
}

/// `,"name":` (names are ours: nothing to escape).
fn key(name: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

fn field<T: serde::Serialize + ?Sized>(name: &str, value: &T, out: &mut Vec<u8>) {
    key(name, out);
    json(value, out);
}

fn field_str(name: &str, value: &str, out: &mut Vec<u8>) {
    key(name, out);
    json_string(value, out);
}

impl<'de> Deserialize<'de> for Fast<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FastVisitor)
    }
}

struct FastVisitor;

/// Sets a slot once; a second value for it (a duplicate key) gives up.
fn set<T, E: serde::de::Error>(slot: &mut Option<T>, value: T) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::custom("duplicate key"));
    }
    *slot = Some(value);
    Ok(())
}

impl<'de> Visitor<'de> for FastVisitor {
    type Value = Fast<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Fast<'de>, A::Error> {
        use serde::de::Error;
        let mut f = Fast::default();
        while let Some(key) = access.next_key_seed(CowStr)? {
            match &*key {
                "event_id" => set(&mut f.event_id, access.next_value_seed(CowStr)?)?,
                "timestamp" => {
                    let v: Value = access.next_value()?;
                    let ms = timestamp(v).map_err(|_| A::Error::custom("timestamp"))?;
                    set(&mut f.timestamp_ms, ms)?
                }
                "event_type" => set(&mut f.event_type, access.next_value_seed(CowStr)?)?,
                "threat_detected" => set(&mut f.threat_detected, access.next_value()?)?,
                "severity" => {
                    let s = access.next_value_seed(CowStr)?;
                    let severity =
                        Severity::parse(&s).ok_or_else(|| A::Error::custom("severity"))?;
                    set(&mut f.severity, severity)?
                }
                "rule_ids" => set(&mut f.rule_ids, access.next_value_seed(Strs)?)?,
                "families" => set(&mut f.families, access.next_value_seed(Strs)?)?,
                "prompt_hash" => set(&mut f.prompt_hash, access.next_value_seed(CowStr)?)?,
                "prompt_length" => set(&mut f.prompt_length, access.next_value()?)?,
                "detection_count" => set(&mut f.detection_count, access.next_value()?)?,
                "scan_duration_ms" => set(&mut f.scan_duration_ms, access.next_value()?)?,
                "customer_id" => set(&mut f.customer_id, access.next_value_seed(CowStr)?)?,
                "mssp_id" => set(&mut f.mssp_id, access.next_value_seed(CowStr)?)?,
                "agent_id" => set(&mut f.agent_id, access.next_value_seed(CowStr)?)?,
                "installation_id" => set(&mut f.installation_id, access.next_value_seed(CowStr)?)?,
                k if k == DROPPED_FIELD => {
                    access.next_value::<IgnoredAny>()?;
                }
                _ => {
                    let value = access.next_value_seed(ExtraSeed)?;
                    f.extra.push((key, value));
                }
            }
        }
        Ok(f)
    }
}

/// An array of strings.
struct Strs;

impl<'de> DeserializeSeed<'de> for Strs {
    type Value = Vec<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(StrsVisitor)
    }
}

struct StrsVisitor;

impl<'de> Visitor<'de> for StrsVisitor {
    type Value = Vec<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of strings")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(4));
        while let Some(s) = seq.next_element_seed(CowStr)? {
            out.push(s);
        }
        Ok(out)
    }
}

/// A pass-through value: strings borrowed, anything else as the `Value` the full path
/// would build (so it serializes to the same bytes).
struct ExtraSeed;

impl<'de> DeserializeSeed<'de> for ExtraSeed {
    type Value = Extra<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(ExtraVisitor)
    }
}

struct ExtraVisitor;

impl<'de> Visitor<'de> for ExtraVisitor {
    type Value = Extra<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Extra::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Extra::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Extra::Str(Cow::Owned(v)))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Extra::Other(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Extra::Other(Value::from(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Extra::Other(Value::from(v)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        // As serde_json's own `Value` does: a non-finite float becomes null.
        Ok(Extra::Other(
            serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number),
        ))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Extra::Other(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let d = serde::de::value::SeqAccessDeserializer::new(seq);
        Value::deserialize(d).map(Extra::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let d = serde::de::value::MapAccessDeserializer::new(map);
        Value::deserialize(d).map(Extra::Other)
    }
}

/// An `event_id` that identifies nothing (empty or spaces): at intake the event gets a
/// fresh id, as one without `event_id` does; kept, a SIEM would take every such event for
/// one.
fn blank_id(id: &str) -> bool {
    id.trim().is_empty()
}
