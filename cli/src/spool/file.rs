//! One spool file: read line by line from where its marker says, each step's events and
//! progress made durable together, its rejects written once, the file deleted at the end.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use raxe_adapters::event::{EncodedEvent, ScanEvent};
use raxe_engine::SiemDispatcher;
use raxe_storage::SledStore;

use super::steps::{line_text, read_line_bounded, Step, STEP_EVENTS};
use super::MARKER_PREFIX;

/// Longest line read (an event's limit); longer ones are rejected without being held in
/// memory.
const MAX_LINE: usize = raxe_adapters::event::MAX_EVENT_BYTES;

/// What one file gave.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FileReport {
    pub accepted: usize,
    pub rejected: usize,
    pub unrouted: usize,
}

/// Ingests one spool file (resuming where a crash left it) and deletes it.
pub fn ingest_file(
    path: &Path,
    dispatcher: &SiemDispatcher,
    store: &SledStore,
    rejected_dir: &Path,
) -> Result<FileReport> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot stat {}", path.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let marker_key = format!(
        "{MARKER_PREFIX}{name}:{}:{}:{}",
        meta.ino(),
        meta.len(),
        meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128
    );
    let rejects_path = rejected_dir.join(format!("{name}.rejected"));
    let committed = match store.marker(marker_key.as_bytes())? {
        Some(value) => Progress::parse(&value).unwrap_or_default(),
        None => Progress::default(),
    };
    let rejects_len_durable = committed.rejects_len.is_some();
    let mut intake = FileIntake {
        dispatcher,
        marker_key,
        name,
        rejects: Vec::new(),
        events: Vec::with_capacity(STEP_EVENTS),
        report: FileReport::default(),
        committed: Progress {
            rejects_len: committed
                .rejects_len
                .or_else(|| Some(fs::metadata(&rejects_path).map_or(0, |m| m.len()))),
            ..committed
        },
        rejects_len_durable,
        rejects_path,
    };
    let (mut offset, mut line_no) = (committed.offset, committed.line_no);
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = BufReader::with_capacity(256 << 10, file);
    let mut step = Step::default();
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        let (consumed, too_long) = read_line_bounded(&mut reader, &mut line, MAX_LINE)?;
        if consumed == 0 {
            break;
        }
        offset += consumed as u64;
        line_no += 1;
        let text = line_text(&line, line_no);
        // A line over the limit is rejected even if all that was kept of it is blanks.
        if too_long || !text.is_empty() {
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
                    intake.events.push(event);
                }
                Err(reject) => {
                    step.reject(reject.len());
                    intake.rejects.push(reject);
                }
            }
        }
        if step.complete() {
            step.reset();
            intake.commit(offset, line_no)?;
        }
    }
    intake.commit(offset, line_no)?;
    let FileIntake {
        marker_key, report, ..
    } = intake;
    fs::remove_file(path).with_context(|| format!("cannot delete ingested {}", path.display()))?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    // The file is gone, so its identity cannot come back; the marker is no longer needed.
    store.remove_marker(marker_key.as_bytes())?;
    Ok(report)
}

/// The queues refused a step's events (full, or the store failed): not this file's fault.
#[derive(Debug)]
pub struct QueueRefused(raxe_engine::EngineError);

impl std::fmt::Display for QueueRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for QueueRefused {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Where a file's intake stands, as its marker records it: `offset,line,rejects length`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Progress {
    /// Bytes of the file taken.
    offset: u64,
    /// Lines taken.
    line_no: usize,
    /// Length of the file's rejects file once the rejects of those lines were written
    /// (absent in markers of earlier versions).
    rejects_len: Option<u64>,
}

impl Progress {
    fn parse(value: &[u8]) -> Option<Progress> {
        let text = std::str::from_utf8(value).ok()?;
        let mut fields = text.split(',');
        let offset = fields.next()?.parse().ok()?;
        let line_no = fields.next()?.parse().ok()?;
        let rejects_len = match fields.next() {
            Some(len) => Some(len.parse().ok()?),
            None => None,
        };
        Some(Progress {
            offset,
            line_no,
            rejects_len,
        })
    }

    fn encode(&self) -> String {
        match self.rejects_len {
            Some(len) => format!("{},{},{len}", self.offset, self.line_no),
            None => format!("{},{}", self.offset, self.line_no),
        }
    }
}

/// One file's step in the making, and what its marker says was committed.
struct FileIntake<'a> {
    dispatcher: &'a SiemDispatcher,
    marker_key: String,
    name: String,
    rejects_path: PathBuf,
    events: Vec<EncodedEvent>,
    rejects: Vec<String>,
    report: FileReport,
    committed: Progress,
    /// Whether the marker holds `committed.rejects_len` (else it is the length the rejects
    /// file had when this run started, known to this run only).
    rejects_len_durable: bool,
}

impl FileIntake<'_> {
    /// Makes the step durable: its rejects (synced), then its events with the progress
    /// up to `offset` / `line_no` in one atomic step.
    fn commit(&mut self, offset: u64, line_no: usize) -> Result<()> {
        let mut next = Progress {
            offset,
            line_no,
            rejects_len: self.committed.rejects_len,
        };
        if !self.rejects.is_empty() {
            if !self.rejects_len_durable {
                // Where this file's rejects start, made durable before any is written, so
                // that a retry of a failed first step cuts what it wrote (one more step,
                // once per file with bad lines).
                self.dispatcher
                    .dispatch_encoded_marked(
                        &[],
                        Some((
                            self.marker_key.as_bytes(),
                            self.committed.encode().as_bytes(),
                        )),
                    )
                    .with_context(|| {
                        format!("cannot record progress of spool file {}", self.name)
                    })?;
                self.rejects_len_durable = true;
            }
            next.rejects_len = Some(self.write_rejects()?);
        }
        let dispatched = self
            .dispatcher
            .dispatch_encoded_marked(
                &self.events,
                Some((self.marker_key.as_bytes(), next.encode().as_bytes())),
            )
            .map_err(QueueRefused)
            .with_context(|| format!("cannot queue events of spool file {}", self.name))?;
        self.report.accepted += dispatched.accepted;
        self.report.unrouted += dispatched.unrouted;
        self.report.rejected += self.rejects.len();
        self.events.clear();
        self.rejects.clear();
        self.committed = next;
        self.rejects_len_durable = next.rejects_len.is_some();
        Ok(())
    }

    /// Appends the step's rejects after what the last committed step left in the rejects
    /// file: lines an attempt wrote before its step failed (or a crash) are cut off, so a
    /// retry does not repeat them. Returns the file's new length.
    fn write_rejects(&self) -> Result<u64> {
        let path = &self.rejects_path;
        let context = || format!("cannot write {}", path.display());
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(context)?;
        let current = out.metadata().with_context(context)?.len();
        // Shorter than committed: rotated by someone meanwhile; only append then.
        let base = match self.committed.rejects_len {
            Some(len) if len < current => {
                out.set_len(len).with_context(context)?;
                len
            }
            _ => current,
        };
        let mut written = 0;
        for reject in &self.rejects {
            out.write_all(reject.as_bytes()).with_context(context)?;
            written += reject.len() as u64;
        }
        out.sync_data().with_context(context)?;
        tracing::warn!(file = %self.name, lines = self.rejects.len(), rejects = %path.display(), "rejected spool lines");
        Ok(base + written)
    }
}

fn reject_line(line_no: usize, reason: &str, raw: &[u8]) -> String {
    let value = serde_json::json!({
        "line": line_no,
        "reason": reason,
        "raw": String::from_utf8_lossy(raw),
    });
    format!("{value}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step that fails after its rejects were written (here: the queue is full) is tried
    /// again without writing them twice; markers of earlier versions still parse.
    #[test]
    fn a_failed_step_tried_again_does_not_repeat_its_rejects() {
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let opts = raxe_storage::StoreOptions {
            max_queue_bytes: Some(2_000),
            ..Default::default()
        };
        let store = Arc::new(SledStore::open_with(dir.path().join("queues"), opts).unwrap());
        let audit = Arc::new(raxe_engine::AuditLog::in_memory());
        let dispatcher = SiemDispatcher::new(store.clone(), audit).unwrap();
        let rejected = dir.path().join("rejected");
        fs::create_dir(&rejected).unwrap();
        // More events than the (unrouted) queue takes, and one bad line.
        let mut lines = vec!["not json".to_string()];
        lines.extend((0..20).map(|n| {
            format!(r#"{{"event_id":"e{n}","timestamp":1769769000123,"threat_detected":true,"severity":"HIGH","customer_id":"c","agent_id":"a"}}"#)
        }));
        let file = dir.path().join("x.jsonl");
        fs::write(&file, lines.join("\n") + "\n").unwrap();
        for _ in 0..3 {
            let err = ingest_file(&file, &dispatcher, &store, &rejected).unwrap_err();
            assert!(format!("{err:#}").contains("cannot queue"), "{err:#}");
        }
        let written = fs::read_to_string(rejected.join("x.jsonl.rejected")).unwrap();
        assert_eq!(written.lines().count(), 1, "{written}");
        assert!(file.exists(), "a file that failed stays");

        let old = Progress::parse(b"10,2").unwrap();
        assert_eq!((old.offset, old.line_no, old.rejects_len), (10, 2, None));
        let new = Progress {
            rejects_len: Some(7),
            ..old
        };
        assert_eq!(Progress::parse(new.encode().as_bytes()), Some(new));
        assert_eq!(Progress::parse(b"10"), None);
        assert_eq!(Progress::parse(b"10,2,x"), None);
    }
}
