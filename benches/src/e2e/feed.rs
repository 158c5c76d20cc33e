//! Realistic scan events (~370 bytes of JSON, unique ids `ev-<seq>`) written into the spool
//! the way agents do: `NAME.jsonl.tmp`, then a rename. Each file's arrival time goes to the
//! tally just before its rename, so receipt latency is measured from spool arrival.

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use super::receiver::Tally;

pub use raxe_benches::scan_event::{event_line, MSSP};

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
