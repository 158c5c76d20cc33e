//! Realistic scan events (~370 bytes of JSON, unique ids `ev-<seq>`), as agents write them.

use std::fmt::Write as _;

/// Every event id starts with this (receivers count events by it).
pub const ID_PREFIX: &str = "ev-";
pub const MSSP: &str = "bench";

const SEVERITIES: [&str; 5] = ["none", "low", "medium", "high", "critical"];
const FAMILIES: [&str; 4] = ["PI", "JB", "PII", "CMD"];

/// One event line (no newline) for `seq`, owned by customer `c<seq % customers>`.
pub fn event_line(out: &mut String, seq: usize, customers: usize) {
    let sev = SEVERITIES[seq % SEVERITIES.len()];
    let fam = FAMILIES[(seq / 7) % FAMILIES.len()];
    // 64 hex digits that change per event and never repeat inside one, as a real SHA-256
    // would (queued chunks are LZ4-packed: a repeating hash would flatter the figures).
    let h = splitmix(seq as u64);
    let (h2, h3, h4) = (splitmix(h), splitmix(h ^ 1), splitmix(h ^ 2));
    let _ = write!(
        out,
        r#"{{"event_id":"{ID_PREFIX}{seq}","timestamp":{ts},"event_type":"scan","threat_detected":{det},"severity":"{sev}","rule_ids":["pi-{r1:03}","pi-{r2:03}"],"families":["{fam}"],"prompt_hash":"sha256:{h:016x}{h2:016x}{h3:016x}{h4:016x}","prompt_length":{len},"scan_duration_ms":{dur}.5,"customer_id":"c{c}","mssp_id":"{MSSP}","agent_id":"agent_prod_{agent:03}","installation_id":"inst_{inst:06x}"}}"#,
        ts = 1_769_769_000_000u64 + seq as u64,
        det = sev != "none",
        r1 = seq % 50,
        r2 = (seq / 3) % 50,
        len = 40 + seq % 4000,
        dur = seq % 40,
        c = seq % customers.max(1),
        agent = seq % 97,
        inst = (seq / 1000) % 0xff_ffff,
    );
}

/// SplitMix64's output function: a cheap, well-mixed 64-bit hash.
pub fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
