// Checks shared by the cargo-fuzz targets (fuzz_targets/*.rs) and by the smoke test
// adapters/tests/fuzz_smoke.rs, which runs them on seeds and random inputs in CI.
// Included with include!(), so no inner attributes here.

use raxe_adapters::cef::{cef_line, CefSettings};
use raxe_adapters::event::ScanEvent;

const KEYS: [&str; 22] = [
    "rt",
    "src",
    "deviceExternalId",
    "suser",
    "cs1",
    "cs1Label",
    "cs2",
    "cs2Label",
    "cs3",
    "cs3Label",
    "cs4",
    "cs4Label",
    "cs5",
    "cs5Label",
    "cs6",
    "cs6Label",
    "cn1",
    "cn1Label",
    "cn2",
    "cn2Label",
    "cn3",
    "cn3Label",
];

/// Any bytes into `ScanEvent::parse_line`: never panics; an accepted event survives the
/// queue encoding exactly and encodes to a one-line CEF record.
pub fn event_parser(data: &[u8]) {
    let Ok(event) = ScanEvent::parse_line(data, 1) else {
        return;
    };
    assert!(!event.customer_id.trim().is_empty());
    let queued = event.to_queue_bytes();
    let back = ScanEvent::from_queue_bytes(&queued).expect("queue bytes decode");
    assert_eq!(back, event);
    let cef = raxe_adapters::cef::cef_line(&Default::default(), &event);
    assert!(!cef.contains('\n') && !cef.contains('\r'));
}

/// Arbitrary strings in every CEF-visible field: the line stays one line, has exactly 7
/// unescaped header pipes, and every unescaped `=` in the extension follows a key we emit
/// (an agent value can never forge a field).
pub fn cef_encoder(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\u{1}').map(str::to_string);
    let mut next = || parts.next().unwrap_or_default();
    let mut event = ScanEvent::new(next());
    event.event_id = next();
    event.agent_id = Some(next());
    event.installation_id = Some(next());
    event.prompt_hash = Some(next());
    event.mssp_id = Some(next());
    event.rule_ids = vec![next(), next()];
    event.families = vec![next()];
    event.threat_detected = data.first().is_some_and(|b| b & 1 == 1);
    let settings = CefSettings {
        device_vendor: next(),
        device_product: next(),
        ..Default::default()
    };
    let line = cef_line(&settings, &event);
    assert!(!line.contains('\n') && !line.contains('\r'), "{line:?}");

    // Header: exactly 7 unescaped pipes before the extension.
    let bytes = line.as_bytes();
    let (mut i, mut pipes) = (0, 0);
    while i < bytes.len() && pipes < 7 {
        match bytes[i] {
            b'\\' => i += 2,
            b'|' => {
                pipes += 1;
                i += 1
            }
            _ => i += 1,
        }
    }
    assert_eq!(pipes, 7, "{line:?}");
    let ext = &line[i..];
    // Extension: every unescaped '=' ends one of our keys, preceded by a space or start.
    let eb = ext.as_bytes();
    let mut j = 0;
    while j < eb.len() {
        match eb[j] {
            b'\\' => j += 2,
            b'=' => {
                let start = ext[..j].rfind(' ').map_or(0, |s| s + 1);
                assert!(KEYS.contains(&&ext[start..j]), "forged key in {line:?}");
                j += 1
            }
            _ => j += 1,
        }
    }
}
