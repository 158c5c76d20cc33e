//! The audit log: every delivery attempt, recorded durably and bounded.
//!
//! On disk (in the audit directory):
//! - `attempts.<gen>.jsonl`: one JSON line per attempt or dead-letter, appended with a
//!   `write` per record (survives a process crash; the OS flushes it to disk).
//! - `summary.json`: counters covering every generation up to `covers_through`, replaced
//!   atomically (write, fsync, rename) when the current file passes `max_file_bytes`.
//!
//! Rotation writes the summary first, then starts generation `gen + 1` and deletes the
//! previous one, so at most two files exist. Opening replays only the generations the
//! summary does not cover: a crash between the two steps neither loses nor double-counts.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Default size at which `attempts.<gen>.jsonl` rotates.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 16 << 20;

/// How one attempt ended, as the audit log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Delivered,
    /// Accepted by the SIEM but only queued there: the events count as delivered when the
    /// indexer acknowledges them ([`AuditKind::Indexed`]).
    Accepted,
    Retry,
    Rejected,
    TooLarge,
    AuthFailed,
    Misconfigured,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    pub destination: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    #[serde(flatten)]
    pub kind: AuditKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuditKind {
    /// One request to the SIEM.
    Attempt {
        events: usize,
        bytes: usize,
        outcome: AttemptOutcome,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        latency_ms: u64,
    },
    /// Events moved to the dead-letter queue.
    DeadLettered { events: usize, reason: String },
    /// Events of accepted requests that the SIEM's indexer acknowledged (Splunk `useACK`).
    Indexed { events: usize },
}

/// Counters for one destination, or for all of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counters {
    /// Requests sent (every attempt, retries included).
    pub total_deliveries: u64,
    /// Requests the SIEM accepted.
    pub successful: u64,
    /// Requests that did not end in `Delivered`.
    pub failed: u64,
    /// Failed requests that were retried (`Retry` outcomes).
    pub retried: u64,
    /// Events moved to the dead-letter queue.
    pub dead_lettered: u64,
    /// Events the SIEM accepted.
    pub events_delivered: u64,
}

impl Counters {
    /// `successful / total_deliveries`, 1.0 before the first attempt.
    pub fn success_rate(&self) -> f64 {
        if self.total_deliveries == 0 {
            1.0
        } else {
            self.successful as f64 / self.total_deliveries as f64
        }
    }

    fn add(&mut self, kind: &AuditKind) {
        match kind {
            AuditKind::Attempt {
                events, outcome, ..
            } => {
                self.total_deliveries += 1;
                match outcome {
                    AttemptOutcome::Delivered => {
                        self.successful += 1;
                        self.events_delivered += *events as u64;
                    }
                    AttemptOutcome::Accepted => self.successful += 1,
                    _ => self.failed += 1,
                }
                if *outcome == AttemptOutcome::Retry {
                    self.retried += 1;
                }
            }
            AuditKind::DeadLettered { events, .. } => self.dead_lettered += *events as u64,
            AuditKind::Indexed { events } => self.events_delivered += *events as u64,
        }
    }
}

/// Counters in total and per destination.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditStats {
    pub total: Counters,
    pub destinations: BTreeMap<String, Counters>,
}

impl AuditStats {
    fn add(&mut self, record: &AuditRecord) {
        self.total.add(&record.kind);
        self.destinations
            .entry(record.destination.clone())
            .or_default()
            .add(&record.kind);
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Summary {
    covers_through: u64,
    stats: AuditStats,
}

/// Durable, bounded record of delivery attempts with running counters.
#[derive(Debug)]
pub struct AuditLog {
    inner: Mutex<Inner>,
    /// Every record is also counted here, for `/metrics`.
    metrics: crate::metrics::Metrics,
}

#[derive(Debug)]
struct Inner {
    /// `None`: in memory only (tests, embedded use without a data directory).
    disk: Option<Disk>,
    stats: AuditStats,
}

#[derive(Debug)]
struct Disk {
    dir: PathBuf,
    generation: u64,
    file: File,
    file_bytes: u64,
    max_file_bytes: u64,
}

impl AuditLog {
    /// An audit log that keeps counters in memory only.
    pub fn in_memory() -> Self {
        AuditLog {
            inner: Mutex::new(Inner {
                disk: None,
                stats: AuditStats::default(),
            }),
            metrics: crate::metrics::Metrics::new(),
        }
    }

    /// Opens (creating) the audit log in `dir`, restoring its counters.
    pub fn open(dir: &Path, max_file_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let summary_path = dir.join("summary.json");
        let summary = match fs::read(&summary_path) {
            Ok(bytes) => serde_json::from_slice::<Summary>(&bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", summary_path.display()),
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Summary {
                covers_through: 0,
                stats: AuditStats::default(),
            },
            Err(e) => return Err(e),
        };
        let mut stats = summary.stats;
        let mut generation = summary.covers_through + 1;
        for g in generations(dir)? {
            if g > summary.covers_through {
                replay(&attempts_path(dir, g), &mut stats)?;
                generation = generation.max(g);
            }
        }
        let path = attempts_path(dir, generation);
        let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
        let mut file_bytes = file.metadata()?.len();
        if file_bytes > 0 && !ends_with_newline(&path)? {
            // Terminate a line torn by a crash so the next record starts clean.
            file.write_all(b"\n")?;
            file_bytes += 1;
        }
        Ok(AuditLog {
            inner: Mutex::new(Inner {
                disk: Some(Disk {
                    dir: dir.to_path_buf(),
                    generation,
                    file,
                    file_bytes,
                    max_file_bytes: max_file_bytes.max(1),
                }),
                stats,
            }),
            metrics: crate::metrics::Metrics::new(),
        })
    }

    /// Records one entry: counted at once, written to disk before returning.
    pub fn record(&self, destination: &str, customer: Option<String>, kind: AuditKind) {
        let record = AuditRecord {
            time_ms: now_ms(),
            destination: destination.to_string(),
            customer,
            kind,
        };
        self.metrics.observe(&record);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.stats.add(&record);
        let stats = inner.stats.clone();
        if let Some(disk) = inner.disk.as_mut() {
            if let Err(e) = disk.write(&record, &stats) {
                // The counters stay right in memory; losing an audit line must not stop delivery.
                tracing::error!(dir = %disk.dir.display(), error = %e, "audit log write failed");
            }
        }
    }

    /// The Prometheus metrics fed by this log (and by the dispatcher).
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    pub fn stats(&self) -> AuditStats {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stats
            .clone()
    }
}

impl Disk {
    fn write(&mut self, record: &AuditRecord, stats: &AuditStats) -> io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file_bytes += line.len() as u64;
        if self.file_bytes >= self.max_file_bytes {
            self.rotate(stats)?;
        }
        Ok(())
    }

    fn rotate(&mut self, stats: &AuditStats) -> io::Result<()> {
        let summary = Summary {
            covers_through: self.generation,
            stats: stats.clone(),
        };
        let tmp = self.dir.join("summary.json.tmp");
        {
            let mut file = File::create(&tmp)?;
            file.write_all(&serde_json::to_vec(&summary).map_err(io::Error::other)?)?;
            file.sync_all()?;
        }
        fs::rename(&tmp, self.dir.join("summary.json"))?;
        File::open(&self.dir)?.sync_all()?;
        let next = self.generation + 1;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(attempts_path(&self.dir, next))?;
        // Keep the previous generation for people reading recent history; drop the one before.
        let _ = fs::remove_file(attempts_path(&self.dir, self.generation.saturating_sub(1)));
        self.generation = next;
        self.file_bytes = 0;
        Ok(())
    }
}

fn attempts_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("attempts.{generation}.jsonl"))
}

fn generations(dir: &Path) -> io::Result<Vec<u64>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(g) = name
            .strip_prefix("attempts.")
            .and_then(|rest| rest.strip_suffix(".jsonl"))
            .and_then(|g| g.parse().ok())
        {
            found.push(g);
        }
    }
    found.sort_unstable();
    Ok(found)
}

fn ends_with_newline(path: &Path) -> io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = File::open(path)?;
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

/// Adds a file's records to `stats`. A torn last line (crash mid-write) is skipped.
fn replay(path: &Path, stats: &mut AuditStats) -> io::Result<()> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for line in BufReader::new(file).split(b'\n') {
        if let Ok(record) = serde_json::from_slice::<AuditRecord>(&line?) {
            stats.add(&record);
        }
    }
    Ok(())
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(outcome: AttemptOutcome, events: usize) -> AuditKind {
        AuditKind::Attempt {
            events,
            bytes: events * 400,
            outcome,
            status: Some(200),
            error: None,
            latency_ms: 3,
        }
    }

    #[test]
    fn counters_follow_outcomes() {
        let log = AuditLog::in_memory();
        log.record("a", None, attempt(AttemptOutcome::Delivered, 10));
        log.record("a", None, attempt(AttemptOutcome::Retry, 10));
        log.record("b", None, attempt(AttemptOutcome::Rejected, 1));
        log.record(
            "b",
            None,
            AuditKind::DeadLettered {
                events: 1,
                reason: "bad".into(),
            },
        );
        let stats = log.stats();
        assert_eq!(stats.total.total_deliveries, 3);
        assert_eq!(stats.total.successful, 1);
        assert_eq!(stats.total.failed, 2);
        assert_eq!(stats.total.retried, 1);
        assert_eq!(stats.total.dead_lettered, 1);
        assert_eq!(stats.destinations["a"].events_delivered, 10);
        assert!((stats.total.success_rate() - 1.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn counters_survive_reopen_and_rotation_without_double_counting() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = AuditLog::open(dir.path(), 300).unwrap();
            for _ in 0..25 {
                log.record(
                    "a",
                    Some("m/c".into()),
                    attempt(AttemptOutcome::Delivered, 2),
                );
            }
        }
        let files = generations(dir.path()).unwrap();
        assert!(
            files.len() <= 2,
            "rotation keeps at most two files: {files:?}"
        );
        let log = AuditLog::open(dir.path(), 300).unwrap();
        assert_eq!(log.stats().total.successful, 25);
        assert_eq!(log.stats().total.events_delivered, 50);
        log.record("a", None, attempt(AttemptOutcome::Retry, 2));
        drop(log);
        let log = AuditLog::open(dir.path(), 300).unwrap();
        assert_eq!(log.stats().total.total_deliveries, 26);
    }

    #[test]
    fn a_torn_last_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = AuditLog::open(dir.path(), 1 << 20).unwrap();
            log.record("a", None, attempt(AttemptOutcome::Delivered, 1));
        }
        let mut file = OpenOptions::new()
            .append(true)
            .open(attempts_path(dir.path(), 1))
            .unwrap();
        file.write_all(b"{\"time_ms\":1,\"destina").unwrap();
        let log = AuditLog::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(log.stats().total.successful, 1);
        log.record("a", None, attempt(AttemptOutcome::Delivered, 1));
        drop(log);
        let log = AuditLog::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(
            log.stats().total.successful,
            2,
            "the record after a torn line counts"
        );
    }
}
