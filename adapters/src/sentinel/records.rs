//! Sentinel records: PascalCase JSON objects (protocols.md §7.4).
//!
//! Columns, in order, each only when the event has a value: `EventTime` (ISO 8601 UTC
//! with ms; named in `time-generated-field`, so Azure sets `TimeGenerated` from it),
//! `EventId`, `EventType`, `ThreatDetected`, `Severity` (capitalised), `RuleIds`,
//! `Families`, `PromptHash`, `PromptLength`, `DetectionCount`, `ScanDurationMs`,
//! `CustomerId`, `MsspId`, `AgentId`, `InstallationId`, then the pass-through fields.
//!
//! Pass-through names: characters other than `[A-Za-z0-9_]` become `_`, then the name is
//! PascalCased on `_` (`client_ip` → `ClientIp`). A name that is reserved by the Data
//! Collector API (`TimeGenerated`, `tenant`, `RawData`, any case), empty, or already
//! taken (one of our columns, or an earlier pass-through field) gets the prefix `Extra`
//! until it is unique (`TimeGenerated` → `ExtraTimeGenerated`). Nothing is dropped.
//!
//! Values: strings over the API's field limit ([`MAX_FIELD_BYTES`], 32 KiB, for the Data
//! Collector API) are cut on a UTF-8 boundary (Azure would truncate them anyway);
//! arrays/objects whose JSON is over the limit are sent as their JSON text, cut the same
//! way. `null` pass-through values are left out.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::event::{json_string, Rfc3339Ms, ScanEvent};

/// The Data Collector API truncates field values beyond 32 KB.
pub const MAX_FIELD_BYTES: usize = 32 * 1024;

/// Names the Data Collector API refuses inside records.
pub const RESERVED: [&str; 3] = ["TimeGenerated", "tenant", "RawData"];

/// The column named in `time-generated-field`.
pub const TIME_FIELD: &str = "EventTime";

/// Appends the Data Collector record for `event` as compact JSON.
pub fn write_record(event: &ScanEvent, out: &mut Vec<u8>) {
    write_record_as(event, TIME_FIELD, &RESERVED, MAX_FIELD_BYTES, out)
}

/// Appends the record for `event` with the event time in `time_field`; pass-through
/// names matching `reserved` (any case) get the `Extra` prefix; values are cut at
/// `max_field` bytes. The Logs Ingestion API uses `TimeGenerated`, its own reserved list
/// and limit (see `crate::sentinel_ingestion`).
pub fn write_record_as(
    event: &ScanEvent,
    time_field: &'static str,
    reserved: &[&str],
    max_field: usize,
    out: &mut Vec<u8>,
) {
    let mut r = Record {
        out,
        names: Vec::with_capacity(16 + event.extra.len()),
        reserved,
        max_field,
    };
    r.out.push(b'{');
    r.string(time_field, Rfc3339Ms::new(event.timestamp_ms).as_str());
    r.string("EventId", &event.event_id);
    r.string("EventType", &event.event_type);
    r.scalar("ThreatDetected", event.threat_detected);
    if let Some(s) = event.severity {
        r.string("Severity", s.capitalized());
    }
    if !event.rule_ids.is_empty() {
        r.structured("RuleIds".into(), &event.rule_ids);
    }
    if !event.families.is_empty() {
        r.structured("Families".into(), &event.families);
    }
    if let Some(v) = &event.prompt_hash {
        r.string("PromptHash", v);
    }
    if let Some(v) = event.prompt_length {
        r.scalar("PromptLength", v);
    }
    if let Some(v) = event.detection_count {
        r.scalar("DetectionCount", v);
    }
    if let Some(v) = event.scan_duration_ms {
        r.scalar("ScanDurationMs", v); // serde_json writes NaN and infinities as null
    }
    r.string("CustomerId", &event.customer_id);
    for (name, v) in [
        ("MsspId", &event.mssp_id),
        ("AgentId", &event.agent_id),
        ("InstallationId", &event.installation_id),
    ] {
        if let Some(v) = v {
            r.string(name, v);
        }
    }
    for (key, value) in &event.extra {
        if !value.is_null() {
            let name = r.unique(pascal_case(key));
            r.value(name.into(), value);
        }
    }
    r.out.push(b'}');
}

/// The record as a JSON value (tests, debugging).
pub fn record(event: &ScanEvent) -> Map<String, Value> {
    let mut out = Vec::new();
    write_record(event, &mut out);
    serde_json::from_slice(&out).expect("records are valid JSON")
}

/// `client_ip` → `ClientIp`; invalid characters become `_` first.
pub fn pascal_case(key: &str) -> String {
    let clean: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let mut out = String::with_capacity(clean.len());
    for part in clean.split('_').filter(|p| !p.is_empty()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            out.push_str(chars.as_str());
        }
    }
    out
}

struct Record<'a> {
    out: &'a mut Vec<u8>,
    /// Columns written so far: a pass-through name must differ from each (any case).
    names: Vec<Cow<'a, str>>,
    reserved: &'a [&'a str],
    max_field: usize,
}

impl<'a> Record<'a> {
    fn unique(&self, mut name: String) -> String {
        loop {
            let taken = name.is_empty()
                || self.reserved.iter().any(|r| r.eq_ignore_ascii_case(&name))
                || self.names.iter().any(|n| n.eq_ignore_ascii_case(&name));
            if !taken {
                return name;
            }
            name.insert_str(0, "Extra");
        }
    }

    /// Writes `"name":`, after a comma unless it is the first column. Names need no JSON
    /// escaping: ours are words (the time field's is a constant too), and a pass-through
    /// one is ASCII letters and digits ([`pascal_case`]).
    fn name(&mut self, name: Cow<'a, str>) {
        debug_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric()), "{name}");
        if !self.names.is_empty() {
            self.out.push(b',');
        }
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.names.push(name);
    }

    /// A string column, cut to `max_field` bytes.
    fn string(&mut self, name: impl Into<Cow<'a, str>>, value: &str) {
        self.name(name.into());
        json_string(cut(value, self.max_field), self.out);
    }

    /// A number or boolean column.
    fn scalar(&mut self, name: impl Into<Cow<'a, str>>, value: impl Serialize) {
        self.name(name.into());
        write_json(self.out, &value);
    }

    /// A pass-through column: strings cut, arrays and objects capped, the rest as is.
    fn value(&mut self, name: Cow<'a, str>, value: &Value) {
        match value {
            Value::Array(_) | Value::Object(_) => self.structured(name, value),
            Value::String(s) => self.string(name, s),
            scalar => self.scalar(name, scalar),
        }
    }

    /// An array or object column; one whose JSON is over `max_field` bytes is sent as that
    /// JSON text, cut, instead.
    fn structured(&mut self, name: Cow<'a, str>, value: &(impl Serialize + ?Sized)) {
        self.name(name);
        let start = self.out.len();
        write_json(self.out, value);
        if self.out.len() - start > self.max_field {
            let text = String::from_utf8(self.out.split_off(start)).expect("JSON is UTF-8");
            json_string(cut(&text, self.max_field), self.out);
        }
    }
}

fn write_json(out: &mut Vec<u8>, value: &(impl Serialize + ?Sized)) {
    serde_json::to_writer(out, value).expect("writing JSON to a Vec cannot fail");
}

/// At most `max` bytes of `s`, cut on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
