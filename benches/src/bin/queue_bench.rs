//! Queue benchmark: `cargo run --release -p raxe-benches --bin queue_bench`.
//!
//! Env: QUEUE_BENCH_EVENTS (default 1_000_000 queued for the reopen/RSS/disk figures),
//! QUEUE_BENCH_QUICK=1 (100_000 events, shorter timed phases), QUEUE_BENCH_DIR (where to
//! put the data; default a temp dir on the /tmp filesystem), QUEUE_BENCH_CHUNK (chunk
//! target bytes), QUEUE_BENCH_SEGMENT (sled segment size), QUEUE_BENCH_PACK=0 (store chunks
//! plain, not LZ4-packed).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use raxe_storage::{Queue, QueueStore, SledStore, StoreOptions};

/// Bytes per record: a scan event (at most 396 bytes) plus a hex note of 14+ digits.
const RECORD: usize = 420;

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
}

/// A realistic scan event (the e2e bench's), padded to exactly `RECORD` bytes with a
/// per-record hex note: chunks are LZ4-packed, so synthetic filler would flatter the
/// figures (scan events pack ~3x).
fn record(i: u64) -> Vec<u8> {
    let mut line = String::with_capacity(RECORD);
    raxe_benches::scan_event::event_line(&mut line, i as usize, 10);
    line.pop();
    line.push_str(r#","note":""#);
    let mut x = i;
    while line.len() < RECORD - 2 {
        x = raxe_benches::scan_event::splitmix(x);
        line.push(char::from(b"0123456789abcdef"[(x & 15) as usize]));
    }
    line.push_str("\"}");
    assert_eq!(
        line.len(),
        RECORD,
        "event {i} is too long for the record size"
    );
    line.into_bytes()
}

fn proc_status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

/// Bytes this process has passed to write() and friends so far (`/proc/self/io`).
fn written_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("wchar:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

struct Row {
    name: String,
    events: u64,
    secs: f64,
    /// CPU seconds of the whole process (every thread: sled's too) during the phase.
    cpu: f64,
}

impl Row {
    fn print(&self, raw: Option<&Row>) {
        let eps = self.events as f64 / self.secs;
        let mbs = eps * RECORD as f64 / 1e6;
        let ratio = raw
            .map(|r| format!("{:>6.2}", eps / (r.events as f64 / r.secs)))
            .unwrap_or_else(|| "     -".into());
        let cpu_per_m = self.cpu / self.events.max(1) as f64 * 1e6;
        println!(
            "| {:<44} | {:>12.0} | {:>8.1} | {} | {:>7.2} |",
            self.name, eps, mbs, ratio, cpu_per_m
        );
    }
}

/// Wall clock and process CPU time from the start of a phase.
struct Clock {
    wall: Instant,
    cpu: f64,
}

impl Clock {
    fn start() -> Clock {
        Clock {
            wall: Instant::now(),
            cpu: raxe_benches::process_cpu_seconds(),
        }
    }

    fn row(&self, name: impl Into<String>, events: u64) -> Row {
        Row {
            name: name.into(),
            events,
            secs: self.wall.elapsed().as_secs_f64(),
            cpu: raxe_benches::process_cpu_seconds() - self.cpu,
        }
    }
}

/// Append-only file, records length-prefixed, one fdatasync per batch: the disk's limit.
fn raw_file(dir: &Path, batch: usize, max_events: u64, max_time: Duration) -> Row {
    let path = dir.join(format!("raw-{batch}.log"));
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("raw file");
    let recs: Vec<Vec<u8>> = (0..batch as u64).map(record).collect();
    let mut buf = Vec::with_capacity(batch * (RECORD + 4));
    let clock = Clock::start();
    let mut events = 0u64;
    while events < max_events && clock.wall.elapsed() < max_time {
        buf.clear();
        for r in &recs {
            buf.extend_from_slice(&(r.len() as u32).to_le_bytes());
            buf.extend_from_slice(r);
        }
        f.write_all(&buf).expect("write");
        f.sync_data().expect("fdatasync");
        events += batch as u64;
    }
    let row = clock.row(format!("raw file + fdatasync, batch {batch}"), events);
    let _ = std::fs::remove_file(&path);
    row
}

fn append(
    q: &dyn Queue,
    batch: usize,
    first: u64,
    max_events: u64,
    max_time: Duration,
    name: &str,
) -> Row {
    let recs: Vec<Vec<u8>> = (first..first + batch as u64).map(record).collect();
    let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
    let clock = Clock::start();
    let mut events = 0u64;
    while events < max_events && clock.wall.elapsed() < max_time {
        q.append(&refs).expect("append");
        events += batch as u64;
    }
    clock.row(name, events)
}

fn options() -> StoreOptions {
    let mut o = StoreOptions::default();
    if let Some(c) = env_usize("QUEUE_BENCH_CHUNK") {
        o.chunk_bytes = c;
    }
    if let Some(s) = env_usize("QUEUE_BENCH_SEGMENT") {
        o.segment_size = s;
    }
    if let Some(p) = env_usize("QUEUE_BENCH_PACK") {
        o.pack_chunks = p != 0;
    }
    o
}

fn print_header() {
    println!(
        "| {:<44} | {:>12} | {:>8} | ratio  | CPU-s/M |",
        "phase", "events/s", "MB/s"
    );
    println!("|{:-<46}|{:-<14}|{:-<10}|--------|---------|", "", "", "");
}

fn fig(k: &str, v: String) {
    println!("| {k:<44} | {v:>22} |");
}

/// Runs one phase in a fresh process, so its RSS figures are its own.
fn run_phase(phase: &str, dir: &Path) {
    let exe = std::env::current_exe().expect("exe");
    let status = std::process::Command::new(exe)
        .arg(phase)
        .arg(dir)
        .status()
        .expect("spawn phase");
    assert!(status.success(), "phase {phase} failed");
}

fn settings() -> (u64, Duration) {
    let quick = std::env::var("QUEUE_BENCH_QUICK").is_ok_and(|v| v != "0");
    let total =
        env_usize("QUEUE_BENCH_EVENTS").unwrap_or(if quick { 100_000 } else { 1_000_000 }) as u64;
    (total, Duration::from_secs(if quick { 1 } else { 3 }))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 3 {
        let dir = Path::new(&args[2]);
        match args[1].as_str() {
            "small" => phase_small(dir),
            "fill" => phase_fill(dir),
            "drain" => phase_drain(dir),
            other => panic!("unknown phase {other}"),
        }
        return;
    }
    let (total, _) = settings();
    let base = std::env::var("QUEUE_BENCH_DIR")
        .unwrap_or_else(|_| std::env::temp_dir().display().to_string());
    let tmp = tempfile::tempdir_in(&base).expect("temp dir");
    println!(
        "queue_bench: {RECORD}-byte records, {total} queued for reopen/RSS/disk, dir {}",
        tmp.path().display()
    );
    println!("options: {:?}", options());
    println!();
    print_header();
    run_phase("small", tmp.path());
    run_phase("fill", tmp.path());
    run_phase("drain", tmp.path());
}

/// Raw-file baselines and the small-batch appends.
fn phase_small(base: &Path) {
    let (_, timed) = settings();
    let raw1 = raw_file(base, 1, 20_000, timed);
    let raw100 = raw_file(base, 100, 2_000_000, timed);
    raw1.print(None);
    raw100.print(None);
    let dir = base.join("small");
    let store = SledStore::open_with(&dir, options()).expect("open");
    let q1 = store.queue("batch-1").expect("queue");
    append(
        &*q1,
        1,
        0,
        20_000,
        timed,
        "durable append, batch 1 (1 thread)",
    )
    .print(Some(&raw1));
    let threads = 8;
    let clock = Clock::start();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let q = q1.clone();
            std::thread::spawn(move || append(&*q, 1, 0, 20_000, timed, "").events)
        })
        .collect();
    let events = handles.into_iter().map(|h| h.join().expect("thread")).sum();
    clock
        .row(
            format!("durable append, batch 1 ({threads} threads)"),
            events,
        )
        .print(Some(&raw1));
    let q100 = store.queue("batch-100").expect("queue");
    append(
        &*q100,
        100,
        0,
        2_000_000,
        timed,
        "durable append, batch 100",
    )
    .print(Some(&raw100));
    drop((q1, q100, store));
    let _ = std::fs::remove_dir_all(&dir);
}

fn phase_fill(base: &Path) {
    let (total, timed) = settings();
    let raw1000 = raw_file(base, 1000, 5_000_000, timed);
    raw1000.print(None);
    let dir = base.join("store");
    let store = SledStore::open_with(&dir, options()).expect("open");
    let q = store.queue("main").expect("queue");
    let written = written_bytes();
    let fill = append(
        &*q,
        1000,
        0,
        total,
        Duration::from_secs(3600),
        "durable append, batch 1000",
    );
    fill.print(Some(&raw1000));
    assert_eq!(q.stats().len, total);
    let written = written_bytes() - written;
    let disk = store.disk_bytes().expect("disk");
    std::fs::write(
        base.join("fill.txt"),
        format!(
            "{disk} {} {} {written}",
            proc_status("VmRSS:"),
            proc_status("VmHWM:")
        ),
    )
    .expect("write figures");
}

fn phase_drain(base: &Path) {
    let (total, _) = settings();
    let figs = std::fs::read_to_string(base.join("fill.txt")).expect("fill figures");
    let figs: Vec<u64> = figs
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let (disk_full, rss_fill, hwm_fill, fill_written) = (figs[0], figs[1], figs[2], figs[3]);
    let dir = base.join("store");
    let t = Instant::now();
    let store = SledStore::open_with(&dir, options()).expect("reopen");
    let q = store.queue("main").expect("queue");
    let reopen = t.elapsed();
    assert_eq!(q.stats().len, total);
    let rss_reopen = proc_status("VmRSS:");

    let drain_written = written_bytes();
    let clock = Clock::start();
    let half = total / 2;
    let mut acked = 0u64;
    let (mut in_lease, mut in_ack) = (Duration::ZERO, Duration::ZERO);
    while acked < half {
        let t0 = Instant::now();
        let l = q.lease(100, usize::MAX).expect("lease").expect("records");
        let t1 = Instant::now();
        acked += l.len() as u64;
        q.ack(l).expect("ack");
        in_lease += t1 - t0;
        in_ack += t1.elapsed();
    }
    clock
        .row("lease 100 + ack, 1 consumer (target 250k)", acked)
        .print(None);
    let calls = (acked / 100).max(1) as u32;
    println!(
        "|   per call of 100: lease {:>4.0} us, ack {:>4.0} us (journal write + sled update, no flush wait) |",
        (in_lease / calls).as_secs_f64() * 1e6,
        (in_ack / calls).as_secs_f64() * 1e6
    );
    let clock = Clock::start();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let q: Arc<dyn Queue> = q.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while let Some(l) = q.lease(100, usize::MAX).expect("lease") {
                    n += l.len() as u64;
                    q.ack(l).expect("ack");
                }
                n
            })
        })
        .collect();
    let acked: u64 = handles.into_iter().map(|h| h.join().expect("thread")).sum();
    clock.row("lease 100 + ack, 4 consumers", acked).print(None);
    assert_eq!(q.stats().len, 0);
    let drain_written = written_bytes() - drain_written;
    let disk_empty = store.disk_bytes().expect("disk");
    let blobs = std::fs::read_dir(dir.join("blobs"))
        .map(|r| r.count())
        .unwrap_or(0);
    let (mut journal_files, mut journal_bytes) = (0, 0);
    for e in std::fs::read_dir(&dir).expect("read dir").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("acks-") && name.ends_with(".log") {
            journal_files += 1;
            journal_bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }

    println!();
    println!("| {:<44} | {:>22} |", "figure", "value");
    println!("|{:-<46}|{:-<24}|", "", "");
    fig(
        &format!("reopen with {total} queued"),
        format!("{:.3} s", reopen.as_secs_f64()),
    );
    fig(
        "disk bytes per queued record",
        format!(
            "{:.1} B ({:.2}x payload)",
            disk_full as f64 / total as f64,
            disk_full as f64 / (total * RECORD as u64) as f64
        ),
    );
    let payload = (total * RECORD as u64) as f64;
    fig(
        "bytes written per payload byte: fill, drain",
        format!(
            "{:.2}x, {:.2}x",
            fill_written as f64 / payload,
            drain_written as f64 / payload
        ),
    );
    fig(
        &format!("disk total with {total} queued"),
        format!("{:.1} MiB", mib(disk_full)),
    );
    fig(
        "disk total after all acked (never shrinks)",
        format!("{:.1} MiB", mib(disk_empty)),
    );
    fig(
        &format!("VmRSS with {total} queued (end of fill)"),
        format!("{:.1} MiB", mib(rss_fill)),
    );
    fig(
        "VmHWM of the fill process",
        format!("{:.1} MiB", mib(hwm_fill)),
    );
    fig(
        &format!("VmRSS after reopen with {total} queued"),
        format!("{:.1} MiB", mib(rss_reopen)),
    );
    fig(
        "VmHWM of the reopen + drain process",
        format!("{:.1} MiB", mib(proc_status("VmHWM:"))),
    );
    fig("sled blob files at end", blobs.to_string());
    fig(
        "ack journal at end (files, bytes)",
        format!("{journal_files}, {:.1} KiB", journal_bytes as f64 / 1024.0),
    );
}
