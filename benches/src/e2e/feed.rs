//! Realistic scan events (~370 bytes of JSON, unique ids `ev-<seq>`) written into the spool
//! the way agents do: `NAME.jsonl.tmp`, then a rename. Each file's arrival time goes to the
//! tally just before its rename, so receipt latency is measured from spool arrival.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use super::receiver::{Tally, ID_PREFIX};

pub const MSSP: &str = "bench";

const SEVERITIES: [&str; 5] = ["none", "low", "medium", "high", "critical"];
const FAMILIES: [&str; 4] = ["PI", "JB", "PII", "CMD"];

/// One event line (no newline) for `seq`, owned by customer `c<seq % customers>`.
pub fn event_line(out: &mut String, seq: usize, customers: usize) {
    let sev = SEVERITIES[seq % SEVERITIES.len()];
    let fam = FAMILIES[(seq / 7) % FAMILIES.len()];
    // A hash-like hex string that changes per event, as a real prompt hash would.
    let h = (seq as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let _ = write!(
        out,
        r#"{{"event_id":"{ID_PREFIX}{seq}","timestamp":{ts},"event_type":"scan","threat_detected":{det},"severity":"{sev}","rule_ids":["pi-{r1:03}","pi-{r2:03}"],"families":["{fam}"],"prompt_hash":"sha256:{h:016x}{h2:016x}{h:016x}{h2:016x}","prompt_length":{len},"scan_duration_ms":{dur}.5,"customer_id":"c{c}","mssp_id":"{MSSP}","agent_id":"agent_prod_{agent:03}","installation_id":"inst_{inst:06x}"}}"#,
        ts = 1_769_769_000_000u64 + seq as u64,
        det = sev != "none",
        r1 = seq % 50,
        r2 = (seq / 3) % 50,
        h2 = h.rotate_left(17),
        len = 40 + seq % 4000,
        dur = seq % 40,
        c = seq % customers.max(1),
        agent = seq % 97,
        inst = (seq / 1000) % 0xff_ffff,
    );
}

/// Writes events `range` as spool files of `per_file` lines (file `k` holds events from
/// `k * per_file`, so `range.start` should be a multiple of `per_file`). `pace`, when set, is the
/// target rate in events/s (files are released on that schedule). Returns the bytes of
/// event JSON written (newlines excluded).
pub fn write_spool(
    spool: &Path,
    tally: &Tally,
    range: std::ops::Range<usize>,
    per_file: usize,
    customers: usize,
    pace: Option<f64>,
) -> std::io::Result<u64> {
    fs::create_dir_all(spool)?;
    let started = Instant::now();
    let mut bytes = 0u64;
    let mut body = String::with_capacity(per_file * 420);
    let per_file = per_file.max(1);
    let (from, n) = (range.start, range.end);
    for first in range.step_by(per_file) {
        let file = first / per_file;
        body.clear();
        for seq in first..(first + per_file).min(n) {
            let before = body.len();
            event_line(&mut body, seq, customers);
            bytes += (body.len() - before) as u64;
            body.push('\n');
        }
        if let Some(rate) = pace {
            let due = started + Duration::from_secs_f64((first - from) as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let name = format!("e2e-{file:07}.jsonl");
        let tmp = spool.join(format!("{name}.tmp"));
        let mut f = fs::File::create(&tmp)?;
        f.write_all(body.as_bytes())?;
        drop(f);
        tally.set_arrival(file);
        fs::rename(&tmp, spool.join(&name))?;
    }
    Ok(bytes)
}

/// Files still waiting in the spool (not yet taken in by the service).
pub fn spool_pending(spool: &Path) -> usize {
    fs::read_dir(spool)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
                .count()
        })
        .unwrap_or(0)
}
