//! Spool intake: agents drop JSON-lines files into the spool directory and make them
//! visible by rename (`*.tmp` and dot-files are ignored). For each complete `*.jsonl` file
//! the service parses every line, makes the good events durable in their queues, records
//! the progress in the same durable step, then deletes the file.
//!
//! Crash safety: progress is a marker `spool:<name>:<inode>:<size>:<mtime>` → byte offset,
//! written atomically with each step's events (`dispatch_encoded_marked`). After a crash the
//! file is resumed at the recorded offset: no event is lost or taken twice. Files stream in
//! steps of 1,000-8,000 lines (see [`Step`]), so a large file never sits in memory. Bad
//! lines go to `rejected/<file>.rejected` with the line number and the reason (a crash can
//! repeat a reject line, never an event).

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use raxe_adapters::event::{EncodedEvent, ScanEvent};
use raxe_engine::SiemDispatcher;
use raxe_storage::SledStore;

/// Events per durable step (one transaction, one fdatasync), at least.
const STEP_EVENTS: usize = 1_000;
/// A step spread over many customers grows until each has about this many events (a
/// 20 KiB chunk of scan events): each queue's share of a step is stored as its own chunks,
/// and 1,000 events over 100 customers made chunks of 10 records, five times the sled items
/// per record of full ones.
const STEP_EVENTS_PER_CUSTOMER: usize = 50;
/// Most events per step, however many customers it spans.
const STEP_EVENTS_MAX: usize = 8_000;
/// Most record bytes per step (a step of large events closes early).
const STEP_BYTES_MAX: usize = 4 << 20;
/// Longest line read; longer ones are rejected without being held in memory.
const MAX_LINE: usize = 1 << 20;

/// What one file gave.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FileReport {
    pub accepted: usize,
    pub rejected: usize,
    pub unrouted: usize,
}

/// Complete spool files, oldest first.
pub fn pending_files(spool: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in
        fs::read_dir(spool).with_context(|| format!("cannot read spool {}", spool.display()))?
    {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.ends_with(".tmp") || !name.ends_with(".jsonl") {
            continue;
        }
        if entry.file_type()?.is_file() {
            let mtime = entry.metadata()?.modified()?;
            files.push((mtime, entry.path()));
        }
    }
    files.sort();
    Ok(files.into_iter().map(|(_, path)| path).collect())
}

/// Ingests one spool file (resuming where a crash left it) and deletes it.
pub fn ingest_file(
    path: &Path,
    dispatcher: &SiemDispatcher,
    store: &SledStore,
    rejected_dir: &Path,
) -> Result<FileReport> {
    let meta = fs::metadata(path).with_context(|| format!("cannot stat {}", path.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let marker_key = format!(
        "spool:{name}:{}:{}:{}",
        meta.ino(),
        meta.len(),
        meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128
    );
    let (mut offset, mut line_no) = match store.marker(marker_key.as_bytes())? {
        Some(value) => parse_progress(&value).unwrap_or((0, 0)),
        None => (0, 0),
    };
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = BufReader::with_capacity(256 << 10, file);
    let mut report = FileReport::default();
    let mut events = Vec::with_capacity(STEP_EVENTS);
    let mut step = Step::default();
    let mut rejects: Vec<String> = Vec::new();
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        let (consumed, too_long) = read_line_bounded(&mut reader, &mut line, MAX_LINE)?;
        if consumed == 0 {
            break;
        }
        offset += consumed as u64;
        line_no += 1;
        let text = trim(&line);
        if !text.is_empty() {
            let encoded = if too_long {
                let start = &text[..text.len().min(200)];
                Err(reject_line(line_no, "event is over 1 MiB", start))
            } else {
                ScanEvent::encode_line(text, line_no)
                    .map_err(|e| reject_line(line_no, &e.to_string(), text))
            };
            match encoded {
                Ok(event) => {
                    let mssp = event.mssp_id.as_deref();
                    step.add(&event.customer_id, mssp, event.record.len());
                    events.push(event);
                }
                Err(reject) => {
                    step.reject(reject.len());
                    rejects.push(reject);
                }
            }
        }
        if step.complete() {
            step.reset();
            commit(
                dispatcher,
                &marker_key,
                &mut events,
                &mut rejects,
                offset,
                line_no,
                &name,
                rejected_dir,
                &mut report,
            )?;
        }
    }
    commit(
        dispatcher,
        &marker_key,
        &mut events,
        &mut rejects,
        offset,
        line_no,
        &name,
        rejected_dir,
        &mut report,
    )?;
    fs::remove_file(path).with_context(|| format!("cannot delete ingested {}", path.display()))?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    // The file is gone, so its identity cannot come back; the marker is no longer needed.
    store.remove_marker(marker_key.as_bytes())?;
    Ok(report)
}

/// When a step is complete: [`STEP_EVENTS`] lines, more when their events span many
/// customers (see [`STEP_EVENTS_PER_CUSTOMER`]), never more than [`STEP_EVENTS_MAX`] lines
/// or [`STEP_BYTES_MAX`] bytes. Rejected lines count too, so a file of bad lines is not
/// held in memory either. `raxe ingest` cuts its batches the same way.
#[derive(Default)]
pub(crate) struct Step {
    /// Accepted and rejected lines.
    lines: usize,
    bytes: usize,
    /// Hashes of the (customer, MSSP) pairs seen, no MSSP being "" as in routing's
    /// `CustomerKey`; a collision only makes the step shorter.
    customers: HashSet<u64>,
    /// The previous event's pair: runs of one customer are counted without hashing.
    last_customer: String,
    last_mssp: String,
}

impl Step {
    /// Counts one event of `customer` (under `mssp`) whose record is `bytes` long.
    pub(crate) fn add(&mut self, customer: &str, mssp: Option<&str>, bytes: usize) {
        self.lines += 1;
        self.bytes += bytes;
        let mssp = mssp.unwrap_or("");
        if self.customers.is_empty() || self.last_customer != customer || self.last_mssp != mssp {
            let mut hasher = DefaultHasher::new();
            (customer, mssp).hash(&mut hasher);
            self.customers.insert(hasher.finish());
            self.last_customer.clear();
            self.last_customer.push_str(customer);
            self.last_mssp.clear();
            self.last_mssp.push_str(mssp);
        }
    }

    /// Counts one rejected line, `bytes` being what is kept of it.
    pub(crate) fn reject(&mut self, bytes: usize) {
        self.lines += 1;
        self.bytes += bytes;
    }

    pub(crate) fn complete(&self) -> bool {
        let wanted =
            (STEP_EVENTS_PER_CUSTOMER * self.customers.len()).clamp(STEP_EVENTS, STEP_EVENTS_MAX);
        self.lines >= wanted || self.bytes >= STEP_BYTES_MAX
    }

    /// Starts the next step.
    pub(crate) fn reset(&mut self) {
        self.lines = 0;
        self.bytes = 0;
        self.customers.clear();
    }
}

#[allow(clippy::too_many_arguments)]
fn commit(
    dispatcher: &SiemDispatcher,
    marker_key: &str,
    events: &mut Vec<EncodedEvent>,
    rejects: &mut Vec<String>,
    offset: u64,
    line_no: usize,
    file_name: &str,
    rejected_dir: &Path,
    report: &mut FileReport,
) -> Result<()> {
    if !rejects.is_empty() {
        let path = rejected_dir.join(format!("{file_name}.rejected"));
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        for reject in rejects.iter() {
            out.write_all(reject.as_bytes())?;
        }
        out.sync_data()?;
        tracing::warn!(file = %file_name, lines = rejects.len(), rejects = %path.display(), "rejected spool lines");
        report.rejected += rejects.len();
        rejects.clear();
    }
    let progress = format!("{offset},{line_no}");
    let dispatched = dispatcher
        .dispatch_encoded_marked(events, Some((marker_key.as_bytes(), progress.as_bytes())))
        .with_context(|| format!("cannot queue events of spool file {file_name}"))?;
    report.accepted += dispatched.accepted;
    report.unrouted += dispatched.unrouted;
    events.clear();
    Ok(())
}

fn reject_line(line_no: usize, reason: &str, raw: &[u8]) -> String {
    let value = serde_json::json!({
        "line": line_no,
        "reason": reason,
        "raw": String::from_utf8_lossy(raw),
    });
    format!("{value}\n")
}

fn parse_progress(value: &[u8]) -> Option<(u64, usize)> {
    let text = std::str::from_utf8(value).ok()?;
    let (offset, line) = text.split_once(',')?;
    Some((offset.parse().ok()?, line.parse().ok()?))
}

fn trim(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    let start = line[..end]
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(end);
    &line[start..end]
}

/// Reads one line (up to and including `\n`, or to EOF) into `out`, keeping at most
/// `max + 2` bytes of it. Returns (bytes consumed, whether the line without its `\n` is
/// longer than `max`).
pub fn read_line_bounded(
    reader: &mut impl BufRead,
    out: &mut Vec<u8>,
    max: usize,
) -> io::Result<(usize, bool)> {
    let mut consumed = 0;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let (chunk, done) = match memchr::memchr(b'\n', buf) {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        // Room for `max` bytes, the newline, and one byte more to tell a longer line.
        let room = (max + 2).saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let n = chunk.len();
        reader.consume(n);
        consumed += n;
        if done {
            break;
        }
    }
    let content = out.len() - usize::from(out.last() == Some(&b'\n'));
    Ok((consumed, content > max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_lines_report_overflow_without_holding_it() {
        let data = format!("short\n{}\nlast", "x".repeat(100));
        let mut reader = io::Cursor::new(data.into_bytes());
        let mut line = Vec::new();
        assert_eq!(
            read_line_bounded(&mut reader, &mut line, 10).unwrap(),
            (6, false)
        );
        line.clear();
        let (n, long) = read_line_bounded(&mut reader, &mut line, 10).unwrap();
        assert_eq!((n, long, line.len()), (101, true, 12));
        line.clear();
        assert_eq!(
            read_line_bounded(&mut reader, &mut line, 10).unwrap(),
            (4, false)
        );
        assert_eq!(line, b"last");
        line.clear();
        assert_eq!(
            read_line_bounded(&mut reader, &mut line, 10).unwrap(),
            (0, false)
        );
    }

    /// Feeds events (customer `i % customers`) until the step is complete; returns how many.
    fn step_length(customers: usize, bytes: usize) -> usize {
        let mut step = Step::default();
        for i in 1.. {
            step.add(&format!("c{}", i % customers), Some("m1"), bytes);
            if step.complete() {
                return i;
            }
        }
        unreachable!()
    }

    #[test]
    fn steps_grow_with_the_customers_they_span() {
        assert_eq!(step_length(1, 400), STEP_EVENTS);
        assert_eq!(step_length(20, 400), STEP_EVENTS);
        assert_eq!(step_length(100, 400), 100 * STEP_EVENTS_PER_CUSTOMER);
        assert_eq!(step_length(1000, 400), STEP_EVENTS_MAX);
        // Large events close a step by bytes, whatever the customers.
        assert_eq!(step_length(1, 1 << 20), STEP_BYTES_MAX >> 20);
        // The same customer under another MSSP is another queue, as routing sees it: no
        // MSSP and an empty one are the same. A reset forgets all.
        let mut step = Step::default();
        step.add("c", Some("m1"), 10);
        step.add("c", None, 10);
        step.add("c", Some(""), 10);
        step.add("c", None, 10);
        step.add("c", Some("m1"), 10);
        assert_eq!((step.customers.len(), step.lines), (2, 5));
        step.reset();
        step.add("c", Some("m1"), 10);
        assert_eq!((step.customers.len(), step.lines, step.bytes), (1, 1, 10));
        // Rejected lines close a step as well.
        let mut step = Step::default();
        for _ in 0..STEP_EVENTS - 1 {
            step.reject(100);
        }
        assert!(!step.complete());
        step.reject(100);
        assert!(step.complete());
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_not_too_long() {
        for (text, long) in [
            ("0123456789\n", false),
            ("0123456789", false),
            ("0123456789a\n", true),
            ("0123456789a", true),
        ] {
            let mut reader = io::Cursor::new(text.as_bytes().to_vec());
            let mut line = Vec::new();
            let (n, too_long) = read_line_bounded(&mut reader, &mut line, 10).unwrap();
            assert_eq!((n, too_long), (text.len(), long), "{text:?}");
        }
    }

    #[test]
    fn only_complete_jsonl_files_are_taken() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.jsonl", "b.jsonl.tmp", ".c.jsonl", "d.txt"] {
            fs::write(dir.path().join(name), "{}\n").unwrap();
        }
        let files = pending_files(dir.path()).unwrap();
        assert_eq!(files, vec![dir.path().join("a.jsonl")]);
    }
}
