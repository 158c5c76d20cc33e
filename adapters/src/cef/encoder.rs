//! One CEF line per scan event (protocols.md §4, §7.5, §7.6).
//!
//! `CEF:0|<vendor>|<product>|<crate version>|<first rule id or "scan">|<name>|<0..10>|ext`
//! with the extension keys, in this order, each only when the event has a value:
//! `rt` (ms), `src` (installation_id; or `deviceExternalId` by option), `suser`
//! (agent_id), `cs1` PromptHash, `cs2` RuleIDs (comma-separated), `cs3` ThreatFamilies
//! (comma-separated), `cs4` EventId (our addition, for de-duplication), `cs5` MsspId,
//! `cs6` CustomerId, `cn1` PromptLength, `cn2` DetectionCount, `cn3` ScanDurationMs
//! (rounded to an integer). Each `csN`/`cnN` is followed by its `csNLabel`/`cnNLabel`.
//! Values are escaped, trailing spaces trimmed (receivers cannot tell them apart from
//! the separator), truncated to the dictionary lengths; empty values are left out.

use super::escape::{escape_header, escape_value, truncate_chars};
use crate::config::CefSrcField;
use crate::event::ScanEvent;

/// The engine's version, sent as Device Version.
pub const DEVICE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Header settings of a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CefSettings {
    pub device_vendor: String,
    pub device_product: String,
    pub device_version: String,
    pub src_field: CefSrcField,
}

impl Default for CefSettings {
    fn default() -> Self {
        CefSettings {
            device_vendor: "RAXE".into(),
            device_product: "ThreatDetection".into(),
            device_version: DEVICE_VERSION.into(),
            src_field: CefSrcField::Src,
        }
    }
}

/// Threat family code → the CEF Name of an event with that family.
fn detected_name(code: &str) -> Option<&'static str> {
    const NAMES: [(&str, &str); 10] = [
        ("PI", "Prompt Injection Detected"),
        ("JB", "Jailbreak Detected"),
        ("PII", "PII Exposure Detected"),
        ("CMD", "Command Injection Detected"),
        ("ENC", "Encoding Attack Detected"),
        ("RAG", "RAG Poisoning Detected"),
        ("HC", "Harmful Content Detected"),
        ("SEC", "Secret Exposure Detected"),
        ("QUAL", "Quality Issue Detected"),
        ("TOOL", "Tool Abuse Detected"),
    ];
    NAMES
        .iter()
        .find(|(c, _)| c.eq_ignore_ascii_case(code.trim()))
        .map(|&(_, n)| n)
}

/// The CEF Name: `"<Family> Detected"` for the first known family, `"Threat Detected"`
/// for a threat without a known family, `"Scan Clean"` when no threat was found.
pub fn event_name(event: &ScanEvent) -> &'static str {
    if !event.threat_detected {
        return "Scan Clean";
    }
    event
        .families
        .iter()
        .find_map(|f| detected_name(f))
        .unwrap_or("Threat Detected")
}

/// The CEF header severity (0 when the event has none).
pub fn cef_severity(event: &ScanEvent) -> u8 {
    event.severity.map_or(0, |s| s.cef())
}

/// Character limits of the values a line may have to give up room from (the dictionary
/// lengths by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Limits {
    signature: usize,
    src: usize,
    suser: usize,
    cs1: usize,
    cs2: usize,
    cs3: usize,
}

impl Limits {
    const DICTIONARY: Limits = Limits {
        signature: 1023,
        src: 255,
        suser: 1023,
        cs1: 4000,
        cs2: 4000,
        cs3: 4000,
    };
}

/// Appends the CEF line for `event` (no line terminator).
pub fn write_cef(settings: &CefSettings, event: &ScanEvent, out: &mut String) {
    write_with(settings, event, &Limits::DICTIONARY, out);
}

/// Appends the CEF line for `event` in at most `budget` bytes when it can: the values least
/// needed to find and attribute an event give up room first (rule ids, families, agent,
/// installation, prompt hash, signature id), never its time, event id, MSSP, customer or
/// numbers, and always whole escape sequences and characters. Returns false when the line
/// is still longer than `budget` (its other values are that long).
pub fn write_cef_within(
    settings: &CefSettings,
    event: &ScanEvent,
    budget: usize,
    out: &mut String,
) -> bool {
    let start = out.len();
    let mut limits = Limits::DICTIONARY;
    write_with(settings, event, &limits, out);
    if out.len() - start <= budget {
        return true;
    }
    // The characters of each value that may give room, in the order they give it.
    let joined = |values: &[String]| {
        let commas = values.len().saturating_sub(1);
        values.iter().map(|v| v.chars().count()).sum::<usize>() + commas
    };
    let lengths = [
        joined(&event.rule_ids),
        joined(&event.families),
        chars_of(&event.agent_id),
        chars_of(&event.installation_id),
        chars_of(&event.prompt_hash),
        event.rule_ids.first().map_or(0, |r| r.chars().count()),
    ];
    // Each round cuts one value by the excess (escaping can make a character several bytes,
    // so a value may take more than one round); a value at 0 is left out.
    for _ in 0..24 {
        let len = out.len() - start;
        if len <= budget {
            return true;
        }
        let excess = len - budget;
        let next_to_cut = [
            &mut limits.cs2,
            &mut limits.cs3,
            &mut limits.suser,
            &mut limits.src,
            &mut limits.cs1,
            &mut limits.signature,
        ]
        .into_iter()
        .zip(lengths)
        .map(|(limit, len)| {
            let used = (*limit).min(len);
            (limit, used)
        })
        .find(|(_, used)| *used > 0);
        let Some((limit, used)) = next_to_cut else {
            return false;
        };
        *limit = used.saturating_sub(excess);
        out.truncate(start);
        write_with(settings, event, &limits, out);
    }
    out.len() - start <= budget
}

fn chars_of(value: &Option<String>) -> usize {
    value.as_deref().map_or(0, |v| v.chars().count())
}

fn write_with(settings: &CefSettings, event: &ScanEvent, limits: &Limits, out: &mut String) {
    out.push_str("CEF:0|");
    escape_header(truncate_chars(&settings.device_vendor, 63), out);
    out.push('|');
    escape_header(truncate_chars(&settings.device_product, 63), out);
    out.push('|');
    escape_header(truncate_chars(&settings.device_version, 31), out);
    out.push('|');
    let sig = event
        .rule_ids
        .first()
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("scan");
    let sig = Some(truncate_chars(sig, limits.signature)).filter(|s| !s.is_empty());
    escape_header(sig.unwrap_or("scan"), out);
    out.push('|');
    escape_header(event_name(event), out);
    out.push('|');
    out.push_str(itoa::Buffer::new().format(cef_severity(event)));
    out.push('|');

    let mut ext = Ext { out, first: true };
    ext.integer("rt", event.timestamp_ms);
    let src_key = match settings.src_field {
        CefSrcField::Src => "src",
        CefSrcField::DeviceExternalId => "deviceExternalId",
    };
    if let Some(v) = &event.installation_id {
        ext.value(src_key, v, limits.src);
    }
    if let Some(v) = &event.agent_id {
        ext.value("suser", v, limits.suser);
    }
    if let Some(v) = &event.prompt_hash {
        ext.labelled("cs1", v, "PromptHash", limits.cs1);
    }
    ext.labelled_list("cs2", &event.rule_ids, "RuleIDs", limits.cs2);
    ext.labelled_list("cs3", &event.families, "ThreatFamilies", limits.cs3);
    ext.labelled("cs4", &event.event_id, "EventId", 4000);
    if let Some(v) = &event.mssp_id {
        ext.labelled("cs5", v, "MsspId", 4000);
    }
    ext.labelled("cs6", &event.customer_id, "CustomerId", 4000);
    if let Some(v) = event.prompt_length {
        ext.number("cn1", v as i128, "PromptLength");
    }
    if let Some(v) = event.detection_count {
        ext.number("cn2", v as i128, "DetectionCount");
    }
    if let Some(v) = event.scan_duration_ms {
        ext.number("cn3", v.round() as i128, "ScanDurationMs");
    }
}

/// The CEF line for `event`.
pub fn cef_line(settings: &CefSettings, event: &ScanEvent) -> String {
    let mut out = String::with_capacity(384);
    write_cef(settings, event, &mut out);
    out
}

struct Ext<'a> {
    out: &'a mut String,
    first: bool,
}

impl Ext<'_> {
    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(' ');
        }
        self.first = false;
        self.out.push_str(key);
        self.out.push('=');
    }

    /// An integer (needs no escaping).
    fn integer(&mut self, key: &str, v: i64) {
        self.key(key);
        self.out.push_str(itoa::Buffer::new().format(v));
    }

    /// `<key>Label=<label>` (labels are fixed words, no escaping).
    fn label(&mut self, key: &str, label: &str) {
        self.out.push(' ');
        self.out.push_str(key);
        self.out.push_str("Label=");
        self.out.push_str(label);
    }

    /// Returns false (and writes nothing) for a value that is empty once trimmed.
    fn value(&mut self, key: &str, v: &str, max: usize) -> bool {
        self.joined(key, std::slice::from_ref(&v), max)
    }

    /// `parts` joined with commas as one value, cut at `max` characters, escaped, trailing
    /// spaces trimmed, written without joining them first. Returns false (and writes
    /// nothing) when that leaves nothing.
    fn joined(&mut self, key: &str, parts: &[impl AsRef<str>], max: usize) -> bool {
        let (mark, first) = (self.out.len(), self.first);
        self.key(key);
        let start = self.out.len();
        let mut left = max;
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                if left == 0 {
                    break;
                }
                self.out.push(',');
                left -= 1;
            }
            let part = truncate_chars(part.as_ref(), left);
            left -= part.chars().count();
            escape_value(part, self.out);
        }
        // No escape sequence ends in a space: trimming the escaped value trims the value.
        let kept = self.out[start..].trim_end_matches(' ').len();
        self.out.truncate(start + kept);
        if kept == 0 {
            self.out.truncate(mark);
            self.first = first;
            return false;
        }
        true
    }

    fn labelled(&mut self, key: &str, v: &str, label: &str, max: usize) {
        self.labelled_list(key, std::slice::from_ref(&v), label, max);
    }

    /// `parts` as one value ([`Ext::joined`]), then its label when it was written.
    fn labelled_list(&mut self, key: &str, parts: &[impl AsRef<str>], label: &str, max: usize) {
        if self.joined(key, parts, max) {
            self.label(key, label);
        }
    }

    fn number(&mut self, key: &str, v: i128, label: &str) {
        let v = v.clamp(i64::MIN as i128, i64::MAX as i128) as i64;
        self.integer(key, v);
        self.label(key, label);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Ext::joined` writes what joining, cutting, trimming and escaping would.
    #[test]
    fn a_list_is_written_as_its_joined_cut_trimmed_escaped_value() {
        let lists: [&[&str]; 8] = [
            &[],
            &[""],
            &["", ""],
            &["pi-001", "pi-003"],
            &["a ", " b", "c  "],
            &["é=ü", "x\\y", "😀\n"],
            &["  ", " "],
            &["long value with spaces", "=", "tail "],
        ];
        for parts in lists {
            for max in 0..40 {
                let expected = {
                    let joined = parts.join(",");
                    let value = truncate_chars(&joined, max).trim_end_matches(' ');
                    (!value.is_empty()).then(|| format!("k={}", super::super::escape::value(value)))
                };
                let mut out = String::from("x=1");
                let mut ext = Ext {
                    out: &mut out,
                    first: false,
                };
                let written = ext.joined("k", parts, max);
                assert_eq!(written, expected.is_some(), "{parts:?} {max}");
                let expected = match expected {
                    Some(kv) => format!("x=1 {kv}"),
                    None => "x=1".to_string(),
                };
                assert_eq!(out, expected, "{parts:?} {max}");
            }
        }
        // A value left out leaves the next key first.
        let mut out = String::new();
        let mut ext = Ext {
            out: &mut out,
            first: true,
        };
        assert!(!ext.joined("k", &["  "], 10));
        ext.integer("n", -5);
        assert_eq!(out, "n=-5");
    }
}
