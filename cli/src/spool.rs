//! Spool intake: agents drop JSON-lines files into the spool directory and make them
//! visible by rename (`*.tmp` and dot-files are ignored). The service first claims a
//! complete `*.jsonl` file by moving it into `spool/ingesting/` (a rename that never
//! replaces a file already there), then parses every line, makes the good events durable in
//! their queues, records the progress in the same durable step, and deletes the file.
//! Only the service touches `ingesting/`: an agent that reuses a name while the first file
//! is read just drops a new file into the spool, which waits for the first to finish.
//!
//! Crash safety: progress is a marker `spool:<name>:<inode>:<size>:<mtime>` → byte offset,
//! written atomically with each step's events (`dispatch_encoded_marked`), the identity
//! being the one of the file actually opened. After a crash the claimed file is resumed at
//! the recorded offset: no event is lost or taken twice. Files stream in steps of
//! 1,000-8,000 lines (see [`Step`]), so a large file never sits in memory. Bad lines go to
//! `rejected/<file>.rejected` with the line number and the reason (a crash, or a step that
//! fails and is tried again, can repeat a reject line, never an event).

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
/// Where claimed files are read from, inside the spool.
pub const INGESTING_DIR: &str = "ingesting";
/// Marker keys of spool progress start with this.
const MARKER_PREFIX: &str = "spool:";
/// A file that keeps failing is logged as an error at most this often.
const COMPLAINT_INTERVAL: Duration = Duration::from_secs(60);

/// The service's spool: where agents drop files, and its `ingesting/` and `rejected/`.
pub struct Spool {
    dir: PathBuf,
    ingesting: PathBuf,
    rejected: PathBuf,
    /// Files that failed, and when that was last logged as an error.
    complaints: Mutex<HashMap<PathBuf, Instant>>,
}

impl Spool {
    /// Creates the spool's subdirectories (private) if needed.
    pub fn open(dir: PathBuf) -> Result<Spool> {
        let ingesting = dir.join(INGESTING_DIR);
        let rejected = dir.join("rejected");
        for sub in [&ingesting, &rejected] {
            crate::data_dir::create_private_dir(sub)
                .with_context(|| format!("cannot create {}", sub.display()))?;
        }
        Ok(Spool {
            dir,
            ingesting,
            rejected,
            complaints: Mutex::new(HashMap::new()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Ingests the files claimed earlier (a crash or a failure left them), then claims and
    /// ingests every complete file in the spool, oldest first. A file that fails stays
    /// where it is and is tried again on the next call, without holding up the files
    /// after it; a failure of the store itself stops the call (every file would fail).
    pub fn ingest_pending(&self, dispatcher: &SiemDispatcher, store: &SledStore) {
        let listed = pending_files(&self.ingesting)
            .and_then(|claimed| Ok((claimed, pending_files(&self.dir)?)));
        let (claimed, fresh) = match listed {
            Ok(files) => files,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot read the spool");
                return;
            }
        };
        let fresh = fresh
            .into_iter()
            .filter_map(|file| match claim(&file, &self.ingesting) {
                Ok(claimed) => claimed,
                Err(e) => {
                    self.complain(&file, &anyhow::Error::new(e).context("cannot claim it"));
                    None
                }
            });
        for claimed in claimed.into_iter().chain(fresh) {
            match ingest_file(&claimed, dispatcher, store, &self.rejected) {
                Ok(report) => {
                    lock(&self.complaints).remove(&claimed);
                    dispatcher
                        .audit()
                        .metrics()
                        .intake(report.accepted, report.rejected);
                    tracing::info!(
                        file = %claimed.display(),
                        accepted = report.accepted,
                        rejected = report.rejected,
                        unrouted = report.unrouted,
                        "spool file ingested"
                    )
                }
                Err(e) => {
                    self.complain(&claimed, &e);
                    if store.health().is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Logs a file's failure: as an error the first time and then once a minute, in
    /// between at debug level, so a file that cannot be read does not flood the log.
    fn complain(&self, file: &Path, error: &anyhow::Error) {
        let mut complaints = lock(&self.complaints);
        let due = complaints
            .get(file)
            .is_none_or(|last| last.elapsed() >= COMPLAINT_INTERVAL);
        if due {
            complaints.insert(file.to_path_buf(), Instant::now());
            tracing::error!(file = %file.display(), error = %format!("{error:#}"), "spool file not ingested; will retry");
        } else {
            tracing::debug!(file = %file.display(), error = %format!("{error:#}"), "spool file not ingested; will retry");
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

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

/// Claims a spool file for reading: moves it into `ingesting_dir` under its name. Returns
/// the new path, or `None` when it is gone or a file of that name is still being ingested
/// (it is claimed once that one is done). The rename never replaces a file.
pub fn claim(file: &Path, ingesting_dir: &Path) -> io::Result<Option<PathBuf>> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let Some(name) = file.file_name() else {
        return Ok(None);
    };
    let target = ingesting_dir.join(name);
    let c_path = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    };
    let (from, to) = (c_path(file)?, c_path(&target)?);
    // SAFETY: two NUL-terminated paths that outlive the call.
    let renamed = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if renamed == 0 {
        return Ok(Some(target));
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EEXIST) | Some(libc::ENOENT) => Ok(None),
        // A file system without RENAME_NOREPLACE: check, then rename (the service is the
        // only writer of `ingesting_dir`, so nothing appears there in between).
        Some(libc::EINVAL) | Some(libc::ENOSYS) => {
            if fs::symlink_metadata(&target).is_ok() {
                return Ok(None);
            }
            match fs::rename(file, &target) {
                Ok(()) => Ok(Some(target)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        }
        _ => Err(err),
    }
}

/// Removes progress markers of spool files that no longer exist (a crash between deleting
/// a file and removing its marker, or a power loss that brought a removed marker back), so
/// that a later file can never take a stale offset. Returns how many were removed.
pub fn sweep_markers(store: &SledStore, spool: &Path) -> Result<usize> {
    let mut removed = 0;
    for key in store.marker_keys(MARKER_PREFIX.as_bytes())? {
        let text = String::from_utf8_lossy(&key);
        let mut parts = text[MARKER_PREFIX.len()..].rsplitn(4, ':');
        let (_mtime, _size, inode, name) = (parts.next(), parts.next(), parts.next(), parts.next());
        let inode: Option<u64> = inode.and_then(|i| i.parse().ok());
        // Earlier versions read files in the spool itself.
        let alive = name.zip(inode).is_some_and(|(name, inode)| {
            [spool.join(INGESTING_DIR).join(name), spool.join(name)]
                .iter()
                .any(|path| fs::symlink_metadata(path).is_ok_and(|m| m.ino() == inode))
        });
        if !alive {
            store.remove_marker(&key)?;
            removed += 1;
        }
    }
    Ok(removed)
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
    let (mut offset, mut line_no) = match store.marker(marker_key.as_bytes())? {
        Some(value) => parse_progress(&value).unwrap_or((0, 0)),
        None => (0, 0),
    };
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
        let text = line.trim_ascii();
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

    #[test]
    fn a_claim_moves_the_file_and_never_replaces_one() {
        let spool = tempfile::tempdir().unwrap();
        let ingesting = spool.path().join(INGESTING_DIR);
        fs::create_dir(&ingesting).unwrap();
        let file = spool.path().join("x.jsonl");
        fs::write(&file, "first\n").unwrap();
        assert_eq!(
            claim(&file, &ingesting).unwrap(),
            Some(ingesting.join("x.jsonl"))
        );
        assert!(!file.exists());
        // A new file of that name waits while the first is in ingesting/.
        fs::write(&file, "second\n").unwrap();
        assert_eq!(claim(&file, &ingesting).unwrap(), None);
        assert_eq!(fs::read_to_string(&file).unwrap(), "second\n");
        let claimed = ingesting.join("x.jsonl");
        assert_eq!(fs::read_to_string(&claimed).unwrap(), "first\n");
        // Gone meanwhile: nothing to claim.
        assert_eq!(
            claim(&spool.path().join("gone.jsonl"), &ingesting).unwrap(),
            None
        );
    }

    #[test]
    fn sweeping_removes_only_markers_of_files_that_are_gone() {
        let spool = tempfile::tempdir().unwrap();
        let store = SledStore::open(spool.path().join("queues")).unwrap();
        fs::create_dir(spool.path().join(INGESTING_DIR)).unwrap();
        let claimed = spool.path().join(INGESTING_DIR).join("a:b.jsonl");
        let legacy = spool.path().join("c.jsonl");
        fs::write(&claimed, "{}\n").unwrap();
        fs::write(&legacy, "{}\n").unwrap();
        let ino = |p: &Path| fs::metadata(p).unwrap().ino();
        let keys = [
            format!("spool:a:b.jsonl:{}:3:17", ino(&claimed)),
            format!("spool:c.jsonl:{}:3:17", ino(&legacy)),
            // Gone, and a file of that name with another inode.
            "spool:gone.jsonl:1:3:17".to_string(),
            format!("spool:c.jsonl:{}:3:17", ino(&legacy) + 1),
        ];
        let none: Vec<&[u8]> = Vec::new();
        for key in &keys {
            store
                .append_group(&[("q", &none)], Some((key.as_bytes(), b"0,0")))
                .unwrap();
        }
        store
            .append_group(&[("q", &none)], Some((b"dead:1", b"")))
            .unwrap();
        assert_eq!(sweep_markers(&store, spool.path()).unwrap(), 2);
        let mut left: Vec<Vec<u8>> = keys[..2].iter().map(|k| k.as_bytes().to_vec()).collect();
        left.sort();
        assert_eq!(store.marker_keys(b"spool:").unwrap(), left);
        assert!(
            store.marker(b"dead:1").unwrap().is_some(),
            "other markers stay"
        );
    }
}
