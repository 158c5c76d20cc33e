//! Crash-recovery and fault-injection harness for `raxe serve` (issue #6).
//!
//! One run:
//! 1. starts local receivers on 127.0.0.1 that record every event id they accept: Splunk
//!    HEC (also with indexer acks), Sentinel Data Collector (verifies the SharedKey HMAC), syslog over TCP, TLS and UDP
//!    (octet-counted RFC 5424 + CEF), LogScale (HEC at `/api/v1/ingest/hec`, Bearer) and
//!    CEF over HTTP (id from `cs4`);
//! 2. configures one customer per destination with the real CLI
//!    (`raxe customer siem configure ... --data-dir`);
//! 3. starts the real `raxe serve` on a fresh data directory and feeds events `h-<seq>`
//!    through the spool (`*.tmp` then rename) and through `raxe ingest` subprocesses;
//! 4. SIGKILLs the service at seeded random moments and restarts it, `--kills` times (every
//!    fourth stop a SIGTERM, which must end cleanly within 20 s), while a
//!    fault schedule breaks the receivers (5xx bursts, 429 + Retry-After, hangs past the
//!    timeout, connection resets, slow answers, poison events, a rotated token / shared key
//!    fixed later by reconfiguring while serve runs, syslog stalls);
//! 5. lets it drain, stops it with SIGTERM, reads `raxe dlq list`, and checks the promises:
//!    nothing lost (with indexer acks: every event reported indexed), duplicates within
//!    the events at risk at each kill (the batch in flight; with indexer acks, every event
//!    the killed process had not acked in its queue, as the receiver saw it, and after the
//!    drain those the last process sent again itself), dead letters are exactly the
//!    poison events, no panic, no spool file left behind.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use raxe_tests::hec::{Fault, HecReceiver};
use raxe_tests::hec_ack::{AckMode, HecAckReceiver};
use raxe_tests::sink::HttpSink;
use raxe_tests::syslog_tcp::SyslogTcpReceiver;
use raxe_tests::syslog_udp::SyslogUdpReceiver;

mod dest;
mod disk;
mod faults;
mod feeding;
mod options;
mod process;
mod report;
mod tls;
use dest::*;
pub use disk::run_disk_full;
use faults::*;
use feeding::*;
pub use options::*;
pub use process::*;
pub use report::*;
use tls::TlsProxy;

pub const USAGE: &str =
    "usage: raxe-harness crash|disk-full [--events N] [--kills K] [--seed S] [--raxe PATH]
       [--work-dir DIR] [--keep] [--kill-min-ms MS] [--kill-max-ms MS] [--batch-size N]
       [--drain-timeout SECS] [--poison N] [--no-faults] [--dest LIST]
  --dest: comma-separated subset of splunk,sentinel,syslog,logscale,cef,tls,syslog-tls,syslog-udp,splunk-ack
          (default: all)";

const MSSP: &str = "harness";
const TOKEN: &str = "12345678-1234-1234-1234-1234567890AB";
const ROTATED_TOKEN: &str = "87654321-4321-4321-4321-BA0987654321";
const WORKSPACE: &str = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const ROTATED_KEY: &str = "HxwdHh8bGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=";
/// Request timeout configured for every destination (a hang costs this much).
const TIMEOUT_SECS: u64 = 2;

/// Runs the crash scenario.
pub fn run(o: &Options) -> Result<Report> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run_async(o))
}

async fn run_async(o: &Options) -> Result<Report> {
    let started = Instant::now();
    let bin = locate_raxe(o.raxe.as_deref())?;
    let work = match &o.work_dir {
        Some(d) => d.clone(),
        None => {
            std::env::temp_dir().join(format!("raxe-harness-{}-{}", std::process::id(), o.seed))
        }
    };
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("clear {}", work.display()))?;
    }
    fs::create_dir_all(&work)?;
    let raxe = Arc::new(Raxe {
        bin,
        data: work.join("data"),
    });
    let serve_log = work.join("serve.log");
    let mut report = Report {
        options_line: format!(
            "--events {} --kills {} --seed {} --batch-size {} --kill-min-ms {} --kill-max-ms {}{}",
            o.events,
            o.kills,
            o.seed,
            o.batch_size,
            o.kill_min_ms,
            o.kill_max_ms,
            if o.faults { "" } else { " --no-faults" }
        ),
        work_dir: work.clone(),
        ..Report::default()
    };

    // Receivers and destinations.
    let mut dests = Vec::new();
    for &kind in &o.dests {
        let (rx, url) = match kind {
            DestKind::Splunk => {
                let r = HecReceiver::start(TOKEN).await;
                let url = r.url();
                (Rx::Hec(r), url)
            }
            DestKind::LogScale => {
                let r = HecReceiver::start_logscale(TOKEN).await;
                let url = r.logscale_url();
                (Rx::Hec(r), url)
            }
            DestKind::Sentinel => {
                let r = HttpSink::start_sentinel(WORKSPACE, KEY).await;
                let url = r.url();
                (Rx::Sink(r), url)
            }
            DestKind::CefHttp => {
                let r = HttpSink::start_cef(TOKEN).await;
                let url = r.url();
                (Rx::Sink(r), url)
            }
            DestKind::Syslog | DestKind::SyslogTls => {
                (Rx::Syslog(SyslogTcpReceiver::start().await), String::new())
            }
            DestKind::SyslogUdp => (
                Rx::SyslogUdp(SyslogUdpReceiver::start().await),
                String::new(),
            ),
            DestKind::Tls => (Rx::Hec(HecReceiver::start(TOKEN).await), String::new()),
            DestKind::SplunkAck => {
                // Indexed a moment after it was accepted, so acks wait across kills.
                let r =
                    HecAckReceiver::start(TOKEN, AckMode::After(Duration::from_millis(300))).await;
                let url = r.url();
                (Rx::HecAck(r), url)
            }
        };
        let mut dest = Dest {
            kind,
            rx,
            url,
            tls: None,
        };
        let tls_backend = match (kind, &dest.rx) {
            (DestKind::Tls, Rx::Hec(backend)) => Some(backend.addr),
            (DestKind::SyslogTls, Rx::Syslog(backend)) => Some(backend.addr),
            _ => None,
        };
        if let Some(backend) = tls_backend {
            let cert_dir = work.join(kind.name());
            fs::create_dir_all(&cert_dir)?;
            let proxy = TlsProxy::start(backend, &cert_dir).await?;
            dest.url = proxy.url();
            dest.tls = Some(proxy);
        }
        dests.push(dest);
    }
    let dests = Arc::new(dests);
    for d in dests.iter() {
        // The TLS destination starts without the private CA (the client must refuse the
        // certificate); the fault schedule adds it. Without faults it is there from the start.
        let ca = match &d.tls {
            Some(t) if !o.faults => Some(t.ca_pem.as_path()),
            _ => None,
        };
        raxe.run_ok(&d.configure_args(o.batch_size, None, ca))?;
    }
    let kinds: Vec<DestKind> = dests.iter().map(|d| d.kind).collect();

    // Poison events: a few ids per destination that can refuse one event.
    let mut rng = fastrand::Rng::with_seed(o.seed);
    let mut poison: Vec<HashSet<String>> = vec![HashSet::new(); dests.len()];
    for (i, d) in dests.iter().enumerate() {
        if !d.kind.can_reject() || !o.faults {
            continue;
        }
        let per_dest = o.events / dests.len();
        for _ in 0..o.poison.min(per_dest / 2) {
            let k = rng.usize(0..per_dest.max(1));
            let id = format!("h-{}", k * dests.len() + i);
            d.rx.poison(&id);
            poison[i].insert(id);
        }
    }

    // Monitor: when each receiver's count grew (for recovery times).
    let stop_monitor = Arc::new(AtomicBool::new(false));
    let growth: Arc<Mutex<Vec<Vec<Instant>>>> = Arc::new(Mutex::new(vec![Vec::new(); dests.len()]));
    let monitor = {
        let (dests, growth, stop) = (dests.clone(), growth.clone(), stop_monitor.clone());
        tokio::spawn(async move {
            let mut last: Vec<usize> = dests.iter().map(|d| d.rx.count()).collect();
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let now = Instant::now();
                let mut g = growth.lock().unwrap();
                for (i, d) in dests.iter().enumerate() {
                    let c = d.rx.count();
                    if c > last[i] {
                        g[i].push(now);
                        last[i] = c;
                    }
                }
            }
        })
    };

    // Start serving, then feed while killing.
    let (mut serve, refused, first_start) = {
        let (r, log) = (raxe.clone(), serve_log.clone());
        tokio::task::spawn_blocking(move || r.spawn_serve(&log)).await??
    };
    let at_risk = Arc::new(AtRisk::new(dests.len(), first_start, o.batch_size));
    report.restarts_refused += refused;
    let mean_kill = (o.kill_min_ms + o.kill_max_ms) / 2;
    let kill_phase = Duration::from_millis(mean_kill * o.kills as u64);
    let chunks = (o.events / 260).max(1) as u32;
    let pace = kill_phase / chunks;
    let notes = Arc::new(Mutex::new(Vec::new()));
    let fed = Arc::new(AtomicUsize::new(0));
    let feeder = {
        let (r, work, kinds, notes) = (raxe.clone(), work.clone(), kinds.clone(), notes.clone());
        let (events, seed, fed) = (o.events, o.seed, fed.clone());
        tokio::task::spawn_blocking(move || {
            feed(&r, &work, &kinds, events, pace, seed, &notes, &fed)
        })
    };

    // The fault schedule, spread over the kill phase.
    let fault_log = Arc::new(Mutex::new(Vec::<String>::new()));
    let reconfigures = Arc::new(Mutex::new(0usize));
    let faults_task = if o.faults {
        let (dests, raxe, log, reconf) = (
            dests.clone(),
            raxe.clone(),
            fault_log.clone(),
            reconfigures.clone(),
        );
        let batch = o.batch_size;
        let phase = kill_phase.max(Duration::from_secs(3));
        Some(tokio::spawn(async move {
            fault_schedule(dests, raxe, log, reconf, batch, phase).await
        }))
    } else {
        None
    };

    let mut kill_rng = fastrand::Rng::with_seed(o.seed ^ 0x6b696c6c);
    let mut restarts: Vec<Instant> = Vec::new();
    let mut kill_times: Vec<Instant> = Vec::new();
    let mut mid_stream = 0;
    let mut planned = 0;
    let mut planned_stop_times = Vec::new();
    // Time planned stops took, taken off the next waits: the kills stay spread over the
    // feeding (which goes on meanwhile) instead of coming after it.
    let mut owed = Duration::ZERO;
    for k in 0..o.kills {
        let wait = Duration::from_millis(kill_rng.u64(o.kill_min_ms..=o.kill_max_ms));
        tokio::time::sleep(wait.saturating_sub(owed)).await;
        owed = owed.saturating_sub(wait);
        // Every other kill lands 0–150 ms after a fresh chunk was handed over (while it is
        // being ingested and delivered), unless feeding is over.
        if k % 2 == 1 {
            let seen = fed.load(Ordering::SeqCst);
            let until = Instant::now() + Duration::from_secs(3);
            while fed.load(Ordering::SeqCst) == seen && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if fed.load(Ordering::SeqCst) != seen {
                mid_stream += 1;
                tokio::time::sleep(Duration::from_millis(kill_rng.u64(0..150))).await;
            }
        }
        if let Some(status) = serve.try_wait()? {
            report.failures.push(format!(
                "raxe serve exited on its own ({status}) before kill {}; see {}",
                kill_times.len() + 1,
                serve_log.display()
            ));
        }
        if k % PLANNED_STOP_EVERY == PLANNED_STOP_EVERY - 1 {
            // A planned restart (an upgrade, a reboot): it must end cleanly, in time.
            planned += 1;
            let asked = Instant::now();
            if let Err(failure) = stop_cleanly(&mut serve).await? {
                report
                    .failures
                    .push(format!("planned stop {planned}: {failure}"));
            }
            owed += asked.elapsed();
            planned_stop_times.push(format!("{:.1}s", asked.elapsed().as_secs_f64()));
        } else {
            let _ = serve.kill(); // SIGKILL
            let _ = serve.wait();
        }
        kill_times.push(Instant::now());
        let (r, log) = (raxe.clone(), serve_log.clone());
        let (child, refused, spawned) =
            tokio::task::spawn_blocking(move || r.spawn_serve(&log)).await??;
        at_risk.restarted(&dests, spawned);
        serve = child;
        report.restarts_refused += refused;
        restarts.push(spawned);
    }
    report.kills = kill_times.len();
    report.notes.push(format!(
        "{mid_stream} of {} kills were aimed 0–150 ms after a chunk was handed over; {planned} were SIGTERMs (planned restarts), which took {}",
        o.kills,
        planned_stop_times.join(", ")
    ));
    let handed = feeder.await??;
    if let Some(t) = faults_task {
        report.failures.extend(t.await??);
    }
    report.faults_injected = fault_log.lock().unwrap().clone();
    report.reconfigures = *reconfigures.lock().unwrap();

    // Drain: wait until every receiver has every expected id (or the timeout).
    let expected: Vec<HashSet<String>> = (0..dests.len())
        .map(|i| {
            (0..o.events)
                .filter(|s| s % dests.len() == i)
                .map(|s| format!("h-{s}"))
                .filter(|id| !poison[i].contains(id))
                .collect()
        })
        .collect();
    let drain_start = Instant::now();
    let deadline = drain_start + o.drain_timeout;
    loop {
        let mut done = true;
        for (i, d) in dests.iter().enumerate() {
            if d.rx.count() < expected[i].len() {
                done = false;
                break;
            }
        }
        if done {
            done = dests.iter().enumerate().all(|(i, d)| {
                let got: HashSet<String> = d.rx.delivered_ids().into_iter().collect();
                expected[i].iter().all(|id| got.contains(id))
            });
        }
        if done {
            report.drained = true;
            break;
        }
        if Instant::now() > deadline {
            break;
        }
        if let Some(status) = serve.try_wait()? {
            report.failures.push(format!(
                "raxe serve exited on its own ({status}) while draining; see {}",
                serve_log.display()
            ));
            let (r, log) = (raxe.clone(), serve_log.clone());
            let (child, _, spawned) =
                tokio::task::spawn_blocking(move || r.spawn_serve(&log)).await??;
            at_risk.restarted(&dests, spawned);
            serve = child;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    report.drain_time = drain_start.elapsed();
    // With indexer acks, requests the last process got accepted and never saw confirmed
    // (it read no answer in time and sent them again) are duplicates no kill caused.
    at_risk.drained(&dests, Instant::now());
    // Let the last dead letters settle, then stop cleanly.
    tokio::time::sleep(Duration::from_millis(500)).await;
    if let Err(failure) = stop_cleanly(&mut serve).await? {
        report.failures.push(failure);
    }
    stop_monitor.store(true, Ordering::Relaxed);
    let _ = monitor.await;

    // Dead letters, read with the service stopped.
    let dlq_out = {
        let r = raxe.clone();
        tokio::task::spawn_blocking(move || {
            r.run_ok(&["dlq", "list", "--limit", "100000000"].map(String::from))
        })
        .await??
    };
    let mut dead: HashMap<String, Vec<String>> = HashMap::new();
    let mut dlq_unnamed = 0usize;
    for line in dlq_out.lines() {
        let cols: Vec<&str> = line.splitn(4, '\t').collect();
        if cols.len() < 2 {
            continue;
        }
        // `raxe dlq list` prints `?` as the id column for a record it cannot decode (an
        // old compact form keeps the id as `id`): take the id from the raw event instead.
        let mut id = cols[1].to_string();
        if id == "?" {
            // The record's bytes as a JSON string; the object in it starts at its first `{`.
            let raw: String = cols
                .get(3)
                .and_then(|raw| serde_json::from_str(raw).ok())
                .unwrap_or_default();
            if let Some(object) = raw.find('{').map(|at| &raw[at..]) {
                let v: serde_json::Value = serde_json::from_str(object).unwrap_or_default();
                if let Some(found) = v["event_id"].as_str().or(v["id"].as_str()) {
                    id = found.to_string();
                    dlq_unnamed += 1;
                }
            }
        }
        dead.entry(cols[0].to_string()).or_default().push(id);
    }

    // Spool must be empty; nothing rejected.
    let spool = raxe.data.join("spool");
    let left: Vec<String> = fs::read_dir(&spool)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jsonl"))
        .collect();
    if !left.is_empty() {
        report
            .failures
            .push(format!("spool files left behind: {left:?}"));
    }
    let rejected: Vec<String> = fs::read_dir(spool.join("rejected"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if !rejected.is_empty() {
        report
            .failures
            .push(format!("spool lines rejected: {rejected:?}"));
    }
    let log_text = fs::read_to_string(&serve_log).unwrap_or_default();
    if log_text.contains("panicked") {
        report
            .failures
            .push(format!("raxe serve panicked; see {}", serve_log.display()));
    }

    // Per-destination figures.
    let growth = growth.lock().unwrap().clone();
    for (i, d) in dests.iter().enumerate() {
        let ids = d.rx.ids();
        let unique: HashSet<&String> = ids.iter().collect();
        let delivered: HashSet<String> = d.rx.delivered_ids().into_iter().collect();
        let lost: Vec<String> = {
            let mut v: Vec<String> = expected[i]
                .iter()
                .filter(|id| !delivered.contains(*id))
                .cloned()
                .collect();
            v.sort();
            v
        };
        let all_ids: HashSet<String> = (0..o.events)
            .filter(|s| s % dests.len() == i)
            .map(|s| format!("h-{s}"))
            .collect();
        let foreign = unique.iter().filter(|id| !all_ids.contains(**id)).count();
        let poison_delivered = poison[i].iter().filter(|id| unique.contains(id)).count();
        let mut dl = dead.remove(&d.kind.destination_id()).unwrap_or_default();
        dl.sort();
        let dl_all = dl.len();
        dl.dedup();
        let recovery = restarts
            .iter()
            .enumerate()
            .map(|(k, &r)| {
                let until = kill_times.get(k + 1).copied();
                growth[i]
                    .iter()
                    .find(|&&t| t > r && !matches!(until, Some(u) if t >= u))
                    .map(|&t| t - r)
            })
            .collect();
        let dr = DestReport {
            name: d.kind.name().to_string(),
            handed: handed[i],
            delivered_unique: delivered.len(),
            accepted_total: ids.len(),
            lost: lost.len(),
            lost_sample: lost.iter().take(10).cloned().collect(),
            duplicates: ids.len() - unique.len(),
            duplicate_bound: at_risk.events(i),
            poison: poison[i].iter().map(|p| (p.clone(), ())).collect(),
            dead_letter_repeats: dl_all - dl.len(),
            dead_lettered: dl,
            poison_delivered,
            foreign,
            requests: d.rx.requests(),
            auth_refused: d.rx.auth_failures(),
            recovery,
        };
        check(&dr, &mut report.failures);
        report.dests.push(dr);
    }
    for (dest, ids) in dead {
        report.failures.push(format!(
            "{} dead letters in unexpected destination {dest}",
            ids.len()
        ));
    }
    if dlq_unnamed > 0 {
        report.notes.push(format!(
            "`raxe dlq list` printed `?` instead of the event id for {dlq_unnamed} dead letters (ids taken from the raw event column)"
        ));
    }
    report.notes.extend(notes.lock().unwrap().iter().cloned());
    if !report.drained {
        report
            .failures
            .push(format!("not drained within {:?}", o.drain_timeout));
    }
    report.total_time = started.elapsed();
    if report.passed() && !o.keep {
        let _ = fs::remove_dir_all(&work);
    }
    Ok(report)
}

/// Every this many stops in the kill phase is a SIGTERM instead of a SIGKILL.
const PLANNED_STOP_EVERY: usize = 4;

/// SIGTERM, then waits for the exit: `Err` with the complaint if it was not clean or not
/// within 20 s (serve's shutdown timeout is 10 s; it is killed then).
async fn stop_cleanly(serve: &mut Child) -> Result<Result<(), String>> {
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(serve.id() as i32, libc::SIGTERM) };
    let stop_deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < stop_deadline {
        if let Some(status) = serve.try_wait()? {
            return Ok(if status.success() {
                Ok(())
            } else {
                Err(format!(
                    "raxe serve did not stop cleanly on SIGTERM: {status}"
                ))
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = serve.kill();
    let _ = serve.wait();
    Ok(Err("raxe serve did not stop within 20 s of SIGTERM".into()))
}
