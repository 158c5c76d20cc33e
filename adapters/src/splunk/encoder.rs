//! HEC `/event` envelopes (protocols.md §1.3, §7.2), shared by Splunk and LogScale.

use crate::event::{json_string, JsonEvent, ScanEvent};

/// Envelope metadata, the same for every event of a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HecMeta {
    pub host: String,
    pub source: String,
    pub sourcetype: Option<String>,
    pub index: Option<String>,
}

/// `time` in epoch seconds: whole seconds print without a fraction (`1751371200`),
/// otherwise with exactly three digits (`1751371200.123`, `1751371200.120`).
pub fn hec_time(ms: i64) -> String {
    let mut out = Vec::with_capacity(24);
    write_hec_time(ms, &mut out);
    String::from_utf8(out).expect("digits, sign and point are ASCII")
}

/// [`hec_time`] appended to `out`; by hand, as `write!` here was ~8% of encoding an
/// envelope.
fn write_hec_time(ms: i64, out: &mut Vec<u8>) {
    if ms < 0 {
        out.push(b'-');
    }
    let abs = ms.unsigned_abs();
    let (secs, frac) = (abs / 1000, abs % 1000);
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = secs;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    if frac != 0 {
        let frac = frac as u32;
        out.extend_from_slice(&[
            b'.',
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ]);
    }
}

/// Appends one envelope followed by `\n`:
/// `{"time":..,"host":..,"source":..,"sourcetype":..,"index":..,"event":{..}}`.
/// `sourcetype` and `index` are left out when unset. `event` is the scan event in
/// snake_case with its pass-through fields (see `ScanEvent`'s `Serialize`).
pub fn write_envelope(meta: &HecMeta, event: &ScanEvent, out: &mut Vec<u8>) {
    write_time(event.timestamp_ms, out);
    write_fields(meta, out);
    serde_json::to_writer(&mut *out, event).expect("writing JSON to a Vec cannot fail");
    out.extend_from_slice(b"}\n");
}

/// [`write_envelope`] for an event in its queued JSON form: the object is copied, not
/// re-serialized. `fields` is [`envelope_fields`] of the destination's meta.
pub(crate) fn write_json_envelope(fields: &[u8], event: &JsonEvent, out: &mut Vec<u8>) {
    write_time(event.timestamp_ms(), out);
    out.extend_from_slice(fields);
    out.extend_from_slice(event.json());
    out.extend_from_slice(b"}\n");
}

/// The part of every envelope between the time and the event object, the same for
/// every event of a destination: `,"host":..,"source":..[,"sourcetype":..][,"index":..],"event":`.
pub(crate) fn envelope_fields(meta: &HecMeta) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    write_fields(meta, &mut out);
    out
}

fn write_time(ms: i64, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"time\":");
    write_hec_time(ms, out);
}

fn write_fields(meta: &HecMeta, out: &mut Vec<u8>) {
    out.extend_from_slice(b",\"host\":");
    json_string(&meta.host, out);
    out.extend_from_slice(b",\"source\":");
    json_string(&meta.source, out);
    if let Some(st) = &meta.sourcetype {
        out.extend_from_slice(b",\"sourcetype\":");
        json_string(st, out);
    }
    if let Some(index) = &meta.index {
        out.extend_from_slice(b",\"index\":");
        json_string(index, out);
    }
    out.extend_from_slice(b",\"event\":");
}

/// One envelope as bytes.
pub fn envelope(meta: &HecMeta, event: &ScanEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    write_envelope(meta, event, &mut out);
    out
}
