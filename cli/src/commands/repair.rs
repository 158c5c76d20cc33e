//! `raxe repair`: set damaged queue data aside and keep every intact record.
//!
//! Two cases. The database opens but a chunk fails its checksum: the chunk is taken out of
//! its queue (durably, as if delivered), the records it still delimits that decode as scan
//! events are appended to the same queue again, and its raw bytes are written under
//! `repair/<time>/`. The database does not open at all: it is moved aside whole (never
//! deleted), a new one is created, and every scan event found by scanning the old files
//! for our chunk layout is routed again, once per event id.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use raxe_adapters::event::ScanEvent;
use raxe_engine::DeadLetter;
use raxe_storage::{scan_raw_records, Queue, QueueError, QueueStore, SledStore};

use crate::data_dir::{create_private_dir, DataDir};
use crate::host::{Host, OpenError};

/// Exit 0 when nothing was damaged or everything damaged was dealt with (or, with
/// `--dry-run`, nothing is damaged); 1 otherwise.
pub fn repair(data: &DataDir, dry_run: bool) -> Result<i32> {
    let queues_dir = data.queues_dir();
    match SledStore::open(&queues_dir) {
        Ok(store) => match repair_chunks(data, &store, dry_run) {
            Err(Unreadable(e)) => {
                // A queue sled lost records of: the data file itself is damaged.
                drop(store);
                damaged_database(data, dry_run, &format!("is damaged: {e}"))
            }
            Ok(code) => Ok(code),
            Err(Other(e)) => Err(e),
        },
        Err(e @ QueueError::InUse { .. }) => {
            bail!("{e}: stop raxe serve before a repair (its queues must not change meanwhile)")
        }
        Err(e @ QueueError::Corrupt { .. }) => {
            damaged_database(data, dry_run, &format!("cannot be opened: {e}"))
        }
        Err(e) => Err(anyhow::Error::new(e).context("cannot open the queues")),
    }
}

/// Says what is wrong with the database; salvages it unless this is a dry run.
fn damaged_database(data: &DataDir, dry_run: bool, what: &str) -> Result<i32> {
    println!("✗ The queue database {what}");
    if dry_run {
        println!("  run `raxe repair` (without --dry-run) to move it aside and recover its events");
        return Ok(1);
    }
    salvage_database(data, &data.queues_dir())
}

fn repair_dir(data: &DataDir) -> Result<PathBuf> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let dir = data.root().join("repair").join(secs.to_string());
    create_private_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Why `repair_chunks` stopped.
enum Stop {
    /// A queue cannot be loaded: the database must be salvaged whole.
    Unreadable(QueueError),
    Other(anyhow::Error),
}
use Stop::{Other, Unreadable};

impl<E: Into<anyhow::Error>> From<E> for Stop {
    fn from(e: E) -> Stop {
        Other(e.into())
    }
}

fn repair_chunks(data: &DataDir, store: &SledStore, dry_run: bool) -> Result<i32, Stop> {
    let mut damaged_total = 0;
    let mut out_dir = None;
    for name in store.list_queues()? {
        let queue = match store.queue(&name) {
            Ok(queue) => queue,
            Err(e @ QueueError::Corrupt { .. }) => return Err(Unreadable(e)),
            Err(e) => return Err(e.into()),
        };
        let damaged = queue.verify()?;
        if damaged.is_empty() {
            println!("✓ {name}: {} records, intact", queue.stats().len);
            continue;
        }
        damaged_total += damaged.len();
        for chunk in damaged {
            let seqs = format!("{}..{}", chunk.first, chunk.first + u64::from(chunk.count));
            println!("✗ {name}: records {seqs} are damaged: {}", chunk.detail);
            if dry_run {
                continue;
            }
            let dir = match &out_dir {
                Some(dir) => dir,
                None => out_dir.insert(repair_dir(data)?),
            };
            let taken = queue.quarantine(chunk.first)?;
            let file_stem = format!("{}.seq{}", name.replace([':', '/'], "_"), chunk.first);
            if let Some(raw) = &taken.raw {
                crate::data_dir::write_atomic(&dir.join(format!("{file_stem}.raw")), raw)?;
            }
            let events: Vec<&[u8]> = taken
                .records
                .iter()
                .filter(|r| readable_event(r).is_some())
                .map(Vec::as_slice)
                .collect();
            if !events.is_empty() {
                queue.append(&events)?;
            }
            println!(
                "  set aside; {} of {} records decode as events and were queued again (the chunk failed its checksum: one may carry a changed byte); raw bytes in {}",
                events.len(),
                chunk.count,
                dir.join(format!("{file_stem}.raw")).display()
            );
        }
    }
    if damaged_total == 0 {
        println!("No damaged records.");
        return Ok(0);
    }
    Ok(if dry_run { 1 } else { 0 })
}

/// The event a queue record holds: a plain queued event, or the event of a dead letter.
fn readable_event(record: &[u8]) -> Option<ScanEvent> {
    ScanEvent::from_queue_bytes(record).ok().or_else(|| {
        DeadLetter::decode(record)
            .ok()
            .and_then(|letter| ScanEvent::from_queue_bytes(&letter.event).ok())
    })
}

fn salvage_database(data: &DataDir, queues_dir: &Path) -> Result<i32> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let aside = data.root().join(format!("queues.damaged-{secs}"));
    fs::rename(queues_dir, &aside).with_context(|| {
        format!(
            "cannot move {} aside to {}",
            queues_dir.display(),
            aside.display()
        )
    })?;
    println!("  moved the damaged database to {}", aside.display());
    let mut found = 0;
    let mut seen = HashSet::new();
    let mut events = Vec::new();
    for file in files_under(&aside)? {
        let bytes = fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
        for record in scan_raw_records(&bytes) {
            found += 1;
            if let Some(event) = readable_event(&record) {
                if seen.insert(event.event_id.clone()) {
                    events.push(event);
                }
            }
        }
    }
    let host = match Host::open(data.clone()) {
        Ok(host) => host,
        Err(OpenError::InUse(msg)) => bail!("{msg}"),
        Err(OpenError::Other(e)) => return Err(e.context("cannot create a new queue database")),
    };
    let mut queued = 0;
    let mut unrouted = 0;
    for batch in events.chunks(1_000) {
        let report = host.dispatcher.dispatch_batch(batch)?;
        queued += report.accepted;
        unrouted += report.unrouted;
    }
    println!(
        "✓ New queue database created; {} scan events recovered from {found} records found in the old files and routed again ({unrouted} of them to no destination: kept as unrouted)",
        queued
    );
    println!("  events already delivered may be delivered again (the SIEM can de-duplicate by event_id); the old files stay in {}", aside.display());
    Ok(0)
}

fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}
