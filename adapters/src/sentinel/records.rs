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
//! Values: strings over [`MAX_FIELD_BYTES`] (32 KiB) are cut on a UTF-8 boundary (Azure
//! would truncate them anyway); arrays/objects whose JSON is over the limit are sent as
//! their JSON text, cut the same way. `null` pass-through values are left out.

use serde_json::{Map, Value};

use crate::event::ScanEvent;

/// Azure truncates field values beyond 32 KB.
pub const MAX_FIELD_BYTES: usize = 32 * 1024;

/// Names the Data Collector API refuses inside records.
pub const RESERVED: [&str; 3] = ["TimeGenerated", "tenant", "RawData"];

/// The column named in `time-generated-field`.
pub const TIME_FIELD: &str = "EventTime";

/// Appends the Data Collector record for `event` as compact JSON.
pub fn write_record(event: &ScanEvent, out: &mut Vec<u8>) {
    write_record_as(event, TIME_FIELD, &RESERVED, out)
}

/// Appends the record for `event` with the event time in `time_field`; pass-through
/// names matching `reserved` (any case) get the `Extra` prefix. The Logs Ingestion API
/// uses `TimeGenerated` and its own reserved list (see `crate::sentinel_ingestion`).
pub fn write_record_as(event: &ScanEvent, time_field: &str, reserved: &[&str], out: &mut Vec<u8>) {
    let mut r = Record {
        out,
        names: Vec::with_capacity(16 + event.extra.len()),
        reserved,
    };
    r.out.push(b'{');
    r.field(time_field, Value::String(event.timestamp_rfc3339()));
    r.field("EventId", Value::String(event.event_id.clone()));
    r.field("EventType", Value::String(event.event_type.clone()));
    r.field("ThreatDetected", Value::Bool(event.threat_detected));
    if let Some(s) = event.severity {
        r.field("Severity", Value::String(s.capitalized().into()));
    }
    if !event.rule_ids.is_empty() {
        r.field("RuleIds", strings(&event.rule_ids));
    }
    if !event.families.is_empty() {
        r.field("Families", strings(&event.families));
    }
    if let Some(v) = &event.prompt_hash {
        r.field("PromptHash", Value::String(v.clone()));
    }
    if let Some(v) = event.prompt_length {
        r.field("PromptLength", v.into());
    }
    if let Some(v) = event.detection_count {
        r.field("DetectionCount", v.into());
    }
    if let Some(v) = event.scan_duration_ms {
        r.field("ScanDurationMs", v.into());
    }
    r.field("CustomerId", Value::String(event.customer_id.clone()));
    for (name, v) in [
        ("MsspId", &event.mssp_id),
        ("AgentId", &event.agent_id),
        ("InstallationId", &event.installation_id),
    ] {
        if let Some(v) = v {
            r.field(name, Value::String(v.clone()));
        }
    }
    for (key, value) in &event.extra {
        if value.is_null() {
            continue;
        }
        let name = r.unique(pascal_case(key));
        r.field(&name, value.clone());
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
    names: Vec<String>,
    reserved: &'a [&'a str],
}

impl Record<'_> {
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

    fn field(&mut self, name: &str, value: Value) {
        if !self.names.is_empty() {
            self.out.push(b',');
        }
        self.names.push(name.to_string());
        serde_json::to_writer(&mut *self.out, name).expect("write to Vec");
        self.out.push(b':');
        serde_json::to_writer(&mut *self.out, &cap(value)).expect("write to Vec");
    }
}

fn strings(v: &[String]) -> Value {
    Value::Array(v.iter().cloned().map(Value::String).collect())
}

/// Applies the 32 KiB field value limit.
fn cap(value: Value) -> Value {
    match value {
        Value::String(s) if s.len() > MAX_FIELD_BYTES => Value::String(cut(&s).to_string()),
        v @ (Value::Array(_) | Value::Object(_)) => {
            let text = v.to_string();
            if text.len() > MAX_FIELD_BYTES {
                Value::String(cut(&text).to_string())
            } else {
                v
            }
        }
        v => v,
    }
}

fn cut(s: &str) -> &str {
    let mut end = MAX_FIELD_BYTES.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
