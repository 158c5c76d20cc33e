//! HEC `/event` envelopes (protocols.md §1.3, §7.2), shared by Splunk and LogScale.

use crate::event::ScanEvent;

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
    let sign = if ms < 0 { "-" } else { "" };
    let abs = ms.unsigned_abs();
    let (secs, frac) = (abs / 1000, abs % 1000);
    if frac == 0 {
        format!("{sign}{secs}")
    } else {
        format!("{sign}{secs}.{frac:03}")
    }
}

/// Appends one envelope followed by `\n`:
/// `{"time":..,"host":..,"source":..,"sourcetype":..,"index":..,"event":{..}}`.
/// `sourcetype` and `index` are left out when unset. `event` is the scan event in
/// snake_case with its pass-through fields (see `ScanEvent`'s `Serialize`).
pub fn write_envelope(meta: &HecMeta, event: &ScanEvent, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"time\":");
    out.extend_from_slice(hec_time(event.timestamp_ms).as_bytes());
    out.extend_from_slice(b",\"host\":");
    json_str(&meta.host, out);
    out.extend_from_slice(b",\"source\":");
    json_str(&meta.source, out);
    if let Some(st) = &meta.sourcetype {
        out.extend_from_slice(b",\"sourcetype\":");
        json_str(st, out);
    }
    if let Some(index) = &meta.index {
        out.extend_from_slice(b",\"index\":");
        json_str(index, out);
    }
    out.extend_from_slice(b",\"event\":");
    serde_json::to_writer(&mut *out, event).expect("writing JSON to a Vec cannot fail");
    out.extend_from_slice(b"}\n");
}

/// One envelope as bytes.
pub fn envelope(meta: &HecMeta, event: &ScanEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    write_envelope(meta, event, &mut out);
    out
}

pub(crate) fn json_str(s: &str, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, s).expect("writing JSON to a Vec cannot fail");
}
