//! Crash-recovery and fault-injection harness for `raxe serve` (issue #6).
//!
//! One run:
//! 1. starts local receivers on 127.0.0.1 that record every event id they accept: Splunk
//!    HEC, Sentinel Data Collector (verifies the SharedKey HMAC), syslog over TCP
//!    (octet-counted RFC 5424 + CEF), LogScale (HEC at `/api/v1/ingest/hec`, Bearer) and
//!    CEF over HTTP (id from `cs4`);
//! 2. configures one customer per destination with the real CLI
//!    (`raxe customer siem configure ... --data-dir`);
//! 3. starts the real `raxe serve` on a fresh data directory and feeds events `h-<seq>`
//!    through the spool (`*.tmp` then rename) and through `raxe ingest` subprocesses;
//! 4. SIGKILLs the service at seeded random moments and restarts it, `--kills` times, while a
//!    fault schedule breaks the receivers (5xx bursts, 429 + Retry-After, hangs past the
//!    timeout, connection resets, slow answers, poison events, a rotated token / shared key
//!    fixed later by reconfiguring while serve runs, syslog stalls);
//! 5. lets it drain, stops it with SIGTERM, reads `raxe dlq list`, and checks the promises:
//!    nothing lost, duplicates within kills × batch size × in-flight (1), dead letters are
//!    exactly the poison events, no panic, no spool file left behind.

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
use raxe_tests::sink::HttpSink;
use raxe_tests::syslog_tcp::SyslogTcpReceiver;

mod disk;
mod tls;
pub use disk::run_disk_full;
use tls::TlsProxy;

pub const USAGE: &str =
    "usage: raxe-harness crash|disk-full [--events N] [--kills K] [--seed S] [--raxe PATH]
       [--work-dir DIR] [--keep] [--kill-min-ms MS] [--kill-max-ms MS] [--batch-size N]
       [--drain-timeout SECS] [--poison N] [--no-faults] [--dest LIST]
  --dest: comma-separated subset of splunk,sentinel,syslog,logscale,cef (default: all)";

const MSSP: &str = "harness";
const TOKEN: &str = "12345678-1234-1234-1234-1234567890AB";
const ROTATED_TOKEN: &str = "87654321-4321-4321-4321-BA0987654321";
const WORKSPACE: &str = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const ROTATED_KEY: &str = "HxwdHh8bGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=";
/// Request timeout configured for every destination (a hang costs this much).
const TIMEOUT_SECS: u64 = 2;

/// Command-line options.
#[derive(Debug, Clone)]
pub struct Options {
    /// `crash` or `disk-full`.
    pub command: String,
    pub events: usize,
    pub kills: usize,
    pub seed: u64,
    pub raxe: Option<PathBuf>,
    pub work_dir: Option<PathBuf>,
    pub keep: bool,
    pub kill_min_ms: u64,
    pub kill_max_ms: u64,
    pub batch_size: usize,
    pub drain_timeout: Duration,
    pub poison: usize,
    pub faults: bool,
    pub dests: Vec<DestKind>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            command: "crash".into(),
            events: 10_000,
            kills: 10,
            seed: 1,
            raxe: None,
            work_dir: None,
            keep: false,
            kill_min_ms: 300,
            kill_max_ms: 1500,
            batch_size: 100,
            drain_timeout: Duration::from_secs(120),
            poison: 2,
            faults: true,
            dests: DestKind::ALL.to_vec(),
        }
    }
}

impl Options {
    /// Parses `crash --events N ...` (the subcommand word is required).
    pub fn parse(args: &[String]) -> Result<Options> {
        let mut o = Options::default();
        let mut it = args.iter();
        match it.next().map(String::as_str) {
            Some(c @ ("crash" | "disk-full")) => o.command = c.to_string(),
            Some(other) => bail!("unknown command {other:?}"),
            None => bail!("missing command"),
        }
        while let Some(flag) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .with_context(|| format!("{flag} needs a value"))
            };
            match flag.as_str() {
                "--events" => o.events = value()?.parse()?,
                "--kills" => o.kills = value()?.parse()?,
                "--seed" => o.seed = value()?.parse()?,
                "--raxe" => o.raxe = Some(value()?.into()),
                "--work-dir" => o.work_dir = Some(value()?.into()),
                "--keep" => o.keep = true,
                "--kill-min-ms" => o.kill_min_ms = value()?.parse()?,
                "--kill-max-ms" => o.kill_max_ms = value()?.parse()?,
                "--batch-size" => o.batch_size = value()?.parse()?,
                "--drain-timeout" => o.drain_timeout = Duration::from_secs(value()?.parse()?),
                "--poison" => o.poison = value()?.parse()?,
                "--no-faults" => o.faults = false,
                "--dest" => {
                    o.dests = value()?
                        .split(',')
                        .map(|d| {
                            DestKind::ALL
                                .iter()
                                .copied()
                                .find(|k| k.name() == d.trim())
                                .with_context(|| format!("unknown destination {d:?}"))
                        })
                        .collect::<Result<_>>()?
                }
                "-h" | "--help" => bail!("help"),
                other => bail!("unknown option {other:?}"),
            }
        }
        if o.kill_max_ms < o.kill_min_ms {
            bail!("--kill-max-ms must be at least --kill-min-ms");
        }
        if o.dests.is_empty() || o.batch_size == 0 {
            bail!("need at least one destination and a batch size of at least 1");
        }
        Ok(o)
    }
}

/// The destination types, in the issue's priority order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DestKind {
    Splunk,
    Sentinel,
    Syslog,
    LogScale,
    CefHttp,
    /// Splunk HEC behind TLS with a certificate from a private CA.
    Tls,
}

impl DestKind {
    pub const ALL: [DestKind; 6] = [
        DestKind::Splunk,
        DestKind::Sentinel,
        DestKind::Syslog,
        DestKind::LogScale,
        DestKind::CefHttp,
        DestKind::Tls,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DestKind::Splunk => "splunk",
            DestKind::Sentinel => "sentinel",
            DestKind::Syslog => "syslog",
            DestKind::LogScale => "logscale",
            DestKind::CefHttp => "cef",
            DestKind::Tls => "tls",
        }
    }

    fn customer(self) -> String {
        format!("c-{}", self.name())
    }

    fn destination_id(self) -> String {
        format!("customer/{MSSP}/{}", self.customer())
    }

    /// Whether the protocol can refuse one event (so poison events make sense).
    fn can_reject(self) -> bool {
        self != DestKind::Syslog
    }
}

enum Rx {
    Hec(HecReceiver),
    Sink(HttpSink),
    Syslog(SyslogTcpReceiver),
}

impl Rx {
    fn count(&self) -> usize {
        match self {
            Rx::Hec(r) => r.accepted_count(),
            Rx::Sink(r) => r.accepted_count(),
            Rx::Syslog(r) => r.accepted_count(),
        }
    }

    fn ids(&self) -> Vec<String> {
        match self {
            Rx::Hec(r) => r.accepted(),
            Rx::Sink(r) => r.accepted(),
            Rx::Syslog(r) => r.accepted(),
        }
    }

    fn requests(&self) -> u64 {
        match self {
            Rx::Hec(r) => r.requests(),
            Rx::Sink(r) => r.requests(),
            Rx::Syslog(r) => r.connections(),
        }
    }

    fn auth_failures(&self) -> u64 {
        match self {
            Rx::Hec(r) => r.auth_failures(),
            Rx::Sink(r) => r.auth_failures(),
            Rx::Syslog(_) => 0,
        }
    }

    fn poison(&self, id: &str) {
        match self {
            Rx::Hec(r) => r.poison(id),
            Rx::Sink(r) => r.poison(id),
            Rx::Syslog(_) => {}
        }
    }

    fn set_token(&self, token: &str) {
        match self {
            Rx::Hec(r) => r.set_token(token),
            Rx::Sink(r) => r.set_token(token),
            Rx::Syslog(_) => {}
        }
    }

    /// Applies a scripted fault; syslog maps hang/slow to a read stall.
    fn fault(&self, fault: Fault) {
        match self {
            Rx::Hec(r) => r.push_fault(fault),
            Rx::Sink(r) => r.push_fault(fault),
            Rx::Syslog(r) => match fault {
                Fault::Hang | Fault::Slow(_) => r.pause_for(Duration::from_millis(1000)),
                _ => {}
            },
        }
    }
}

struct Dest {
    kind: DestKind,
    rx: Rx,
    url: String,
    tls: Option<TlsProxy>,
}

impl Dest {
    fn configure_args(
        &self,
        batch_size: usize,
        token: Option<&str>,
        ca_cert: Option<&Path>,
    ) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "customer".into(),
            "siem".into(),
            "configure".into(),
            self.kind.customer(),
            "--mssp".into(),
            MSSP.into(),
        ];
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
        match self.kind {
            DestKind::Splunk | DestKind::Tls => push(&[
                "--type",
                "splunk",
                "--url",
                &self.url,
                "--token",
                token.unwrap_or(TOKEN),
            ]),
            DestKind::LogScale => push(&[
                "--type",
                "crowdstrike",
                "--url",
                &self.url,
                "--token",
                token.unwrap_or(TOKEN),
            ]),
            DestKind::Sentinel => push(&[
                "--type",
                "sentinel",
                "--url",
                &self.url,
                "--workspace-id",
                WORKSPACE,
                "--log-type",
                "RaxeHarness",
                "--token",
                token.unwrap_or(KEY),
            ]),
            DestKind::CefHttp => push(&[
                "--type",
                "cef",
                "--url",
                &self.url,
                "--token",
                token.unwrap_or(TOKEN),
            ]),
            DestKind::Syslog => {
                let Rx::Syslog(r) = &self.rx else {
                    unreachable!()
                };
                let port = r.port().to_string();
                push(&[
                    "--type",
                    "cef",
                    "--url",
                    "syslog://127.0.0.1",
                    "--transport",
                    "tcp",
                    "--port",
                    &port,
                ])
            }
        }
        if let Some(ca) = ca_cert {
            push(&["--ca-cert", &ca.display().to_string()]);
        }
        let batch = batch_size.to_string();
        let timeout = TIMEOUT_SECS.to_string();
        push(&[
            "--batch-size",
            &batch,
            "--flush-interval",
            "0",
            "--retry-count",
            "3",
            "--timeout",
            &timeout,
        ]);
        a
    }
}

/// What the run measured, per destination.
#[derive(Debug, Clone, Default)]
pub struct DestReport {
    pub name: String,
    pub handed: usize,
    pub delivered_unique: usize,
    pub accepted_total: usize,
    pub lost: usize,
    pub lost_sample: Vec<String>,
    pub duplicates: usize,
    pub duplicate_bound: usize,
    pub poison: BTreeMap<String, ()>,
    /// Unique dead-lettered ids.
    pub dead_lettered: Vec<String>,
    /// Dead letters repeated (a kill between the dead-letter write and the ack).
    pub dead_letter_repeats: usize,
    pub poison_delivered: usize,
    pub foreign: usize,
    pub requests: u64,
    /// Requests the receiver refused for a wrong credential (the rotation window).
    pub auth_refused: u64,
    /// Per restart: time from restart to the next accepted event (None: none before the
    /// next kill / end of run).
    pub recovery: Vec<Option<Duration>>,
}

/// The whole run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub options_line: String,
    pub dests: Vec<DestReport>,
    pub kills: usize,
    pub restarts_refused: usize,
    pub reconfigures: usize,
    pub faults_injected: Vec<String>,
    pub drained: bool,
    pub drain_time: Duration,
    pub total_time: Duration,
    pub failures: Vec<String>,
    pub notes: Vec<String>,
    pub work_dir: PathBuf,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "raxe-harness crash {}", self.options_line);
        let _ = writeln!(
            s,
            "kills {} (restarts refused while `raxe ingest` held the lock: {}), live reconfigurations {}, drained {} in {:.1}s, total {:.1}s",
            self.kills,
            self.restarts_refused,
            self.reconfigures,
            if self.drained { "yes" } else { "NO" },
            self.drain_time.as_secs_f64(),
            self.total_time.as_secs_f64()
        );
        let _ = writeln!(s, "faults: {}", self.faults_injected.join(", "));
        let _ = writeln!(
            s,
            "\n{:<9} {:>8} {:>9} {:>5} {:>6} {:>6} {:>9} {:>8} {:>8} {:>9} {:>13} {:>13}",
            "dest",
            "handed",
            "delivered",
            "lost",
            "dups",
            "bound",
            "dlq/exp",
            "foreign",
            "requests",
            "auth401/3",
            "recov p50 ms",
            "recov max ms"
        );
        for d in &self.dests {
            let mut rec: Vec<u128> = d.recovery.iter().flatten().map(|r| r.as_millis()).collect();
            rec.sort_unstable();
            let p50 = rec.get(rec.len() / 2).map_or("-".into(), |v| v.to_string());
            let max = rec.last().map_or("-".into(), |v| v.to_string());
            let _ = writeln!(
                s,
                "{:<9} {:>8} {:>9} {:>5} {:>6} {:>6} {:>9} {:>8} {:>8} {:>9} {:>13} {:>13}",
                d.name,
                d.handed,
                d.delivered_unique,
                d.lost,
                d.duplicates,
                d.duplicate_bound,
                if d.dead_letter_repeats > 0 {
                    format!(
                        "{}/{}+{}r",
                        d.dead_lettered.len(),
                        d.poison.len(),
                        d.dead_letter_repeats
                    )
                } else {
                    format!("{}/{}", d.dead_lettered.len(), d.poison.len())
                },
                d.foreign,
                d.requests,
                d.auth_refused,
                format!("{p50} ({}/{})", rec.len(), d.recovery.len()),
                max
            );
        }
        let _ = writeln!(
            s,
            "(dups: accepted more than once; bound: kills × batch size × 1 in flight; dlq/exp: unique dead letters / poison events, +Nr: dead letters written again after a kill; recov: restart → next accepted event, (restarts with one / restarts))"
        );
        let _ = writeln!(
            s,
            "\nrecovery after each restart (ms to the first accepted event, any destination):"
        );
        let n = self.dests.first().map_or(0, |d| d.recovery.len());
        let mut line = String::new();
        for i in 0..n {
            let first = self
                .dests
                .iter()
                .filter_map(|d| d.recovery.get(i).copied().flatten())
                .min();
            let _ = write!(
                line,
                "{} ",
                first.map_or("-".into(), |d| d.as_millis().to_string())
            );
        }
        let _ = writeln!(s, "  {}", line.trim_end());
        for note in &self.notes {
            let _ = writeln!(s, "note: {note}");
        }
        if self.failures.is_empty() {
            let _ = writeln!(
                s,
                "\nPASS: nothing lost, duplicates within bounds, dead letters = poison events"
            );
        } else {
            let _ = writeln!(s, "\nFAIL:");
            for f in &self.failures {
                let _ = writeln!(s, "  - {f}");
            }
            let _ = writeln!(s, "work directory kept: {}", self.work_dir.display());
        }
        s
    }
}

/// Finds the `raxe` binary: `--raxe`, else next to this executable (target/<profile>/),
/// else one directory up (test executables live in target/<profile>/deps/).
pub fn locate_raxe(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        bail!("--raxe {}: no such file", p.display());
    }
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().map(Path::to_path_buf);
    for _ in 0..2 {
        let Some(d) = dir else { break };
        let candidate = d.join("raxe");
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = d.parent().map(Path::to_path_buf);
    }
    bail!(
        "cannot find the raxe binary next to {}; build it first (`cargo build [--release] -p raxe-cli`) or pass --raxe PATH",
        exe.display()
    )
}

struct Raxe {
    bin: PathBuf,
    data: PathBuf,
}

impl Raxe {
    fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--data-dir")
            .arg(&self.data)
            .env("RAXE_LOG", "warn")
            .env("NO_COLOR", "1");
        c
    }

    fn run(&self, args: &[String]) -> Result<Output> {
        self.command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("run {}", self.bin.display()))
    }

    fn run_ok(&self, args: &[String]) -> Result<String> {
        let out = self.run(args)?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            bail!("raxe {} failed: {text}", args.join(" "));
        }
        Ok(text)
    }

    /// Spawns `raxe serve`, retrying while the data directory is locked by a direct
    /// `raxe ingest`. Returns the child, how many attempts were refused, and when the
    /// successful one was started.
    fn spawn_serve(&self, log: &Path) -> Result<(Child, usize, Instant)> {
        let mut refused = 0;
        loop {
            let log_file = OpenOptions::new().create(true).append(true).open(log)?;
            let spawned = Instant::now();
            let mut child = self
                .command()
                .args([
                    "serve",
                    "--poll-interval-ms",
                    "50",
                    "--shutdown-timeout",
                    "5",
                ])
                .stdin(Stdio::null())
                .stdout(log_file.try_clone()?)
                .stderr(log_file)
                .spawn()
                .context("spawn raxe serve")?;
            // An "already running" refusal exits at once; anything else keeps running.
            let deadline = Instant::now() + Duration::from_millis(150);
            let mut exited = None;
            while Instant::now() < deadline {
                if let Some(status) = child.try_wait()? {
                    exited = Some(status);
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            match exited {
                None => return Ok((child, refused, spawned)),
                Some(status) => {
                    refused += 1;
                    if refused > 200 {
                        bail!(
                            "raxe serve keeps exiting at start ({status}); see {}",
                            log.display()
                        );
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}

fn event_line(seq: usize, dest: DestKind) -> String {
    format!(
        r#"{{"event_id":"h-{seq}","timestamp":1769769000123,"event_type":"scan","threat_detected":true,"severity":"high","rule_ids":["pi-001"],"families":["PI"],"prompt_hash":"sha256:ab","prompt_length":42,"customer_id":"{}","mssp_id":"{MSSP}","agent_id":"harness"}}"#,
        dest.customer()
    )
}

/// Feeds every event in chunks: most as spool files (`.tmp` + rename), every fourth chunk
/// through `raxe ingest FILE`. Returns events handed over per destination index.
#[allow(clippy::too_many_arguments)]
fn feed(
    raxe: &Raxe,
    work: &Path,
    kinds: &[DestKind],
    events: usize,
    pace: Duration,
    seed: u64,
    notes: &Mutex<Vec<String>>,
    fed: &AtomicUsize,
) -> Result<Vec<usize>> {
    let mut rng = fastrand::Rng::with_seed(seed ^ 0xfeed);
    let spool = raxe.data.join("spool");
    let mut handed = vec![0usize; kinds.len()];
    let mut seq = 0;
    let mut chunk_no = 0;
    while seq < events {
        let n = rng.usize(20..=500).min(events - seq);
        let mut body = String::with_capacity(n * 300);
        let mut per = vec![0usize; kinds.len()];
        for s in seq..seq + n {
            let i = s % kinds.len();
            per[i] += 1;
            body.push_str(&event_line(s, kinds[i]));
            body.push('\n');
        }
        if chunk_no % 4 == 3 {
            let file = work.join(format!("ingest-{chunk_no:06}.jsonl"));
            fs::write(&file, &body)?;
            let args = vec!["ingest".to_string(), file.display().to_string()];
            let mut attempts = 0;
            loop {
                attempts += 1;
                let out = raxe.run(&args)?;
                let said = String::from_utf8_lossy(&out.stdout).to_string();
                let accepted = said
                    .split_whitespace()
                    .skip_while(|w| *w != "accepted")
                    .nth(1)
                    .and_then(|w| w.trim_end_matches(',').parse::<usize>().ok());
                if out.status.success() && accepted == Some(n) {
                    break;
                }
                let msg = format!(
                    "raxe ingest {} (attempt {attempts}) said: {} {}",
                    file.display(),
                    said.trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                if accepted.is_some() || attempts >= 20 {
                    bail!("{msg}");
                }
                // E.g. the spool handover raced a restart; nothing was accepted: try again.
                notes.lock().unwrap().push(msg);
                std::thread::sleep(Duration::from_millis(100));
            }
            fs::remove_file(&file)?;
        } else {
            let name = format!("feed-{chunk_no:06}.jsonl");
            let tmp = spool.join(format!("{name}.tmp"));
            let mut f = File::create(&tmp)?;
            f.write_all(body.as_bytes())?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, spool.join(&name))?;
        }
        for (h, p) in handed.iter_mut().zip(per) {
            *h += p;
        }
        seq += n;
        chunk_no += 1;
        fed.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(pace);
    }
    Ok(handed)
}

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
            DestKind::Syslog => (Rx::Syslog(SyslogTcpReceiver::start().await), String::new()),
            DestKind::Tls => (Rx::Hec(HecReceiver::start(TOKEN).await), String::new()),
        };
        let mut dest = Dest {
            kind,
            rx,
            url,
            tls: None,
        };
        if let (DestKind::Tls, Rx::Hec(backend)) = (kind, &dest.rx) {
            let proxy = TlsProxy::start(backend.addr, &work).await?;
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
    let (mut serve, refused, _) = {
        let (r, log) = (raxe.clone(), serve_log.clone());
        tokio::task::spawn_blocking(move || r.spawn_serve(&log)).await??
    };
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
    for k in 0..o.kills {
        let wait = kill_rng.u64(o.kill_min_ms..=o.kill_max_ms);
        tokio::time::sleep(Duration::from_millis(wait)).await;
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
        let _ = serve.kill(); // SIGKILL
        let _ = serve.wait();
        kill_times.push(Instant::now());
        let (r, log) = (raxe.clone(), serve_log.clone());
        let (child, refused, spawned) =
            tokio::task::spawn_blocking(move || r.spawn_serve(&log)).await??;
        serve = child;
        report.restarts_refused += refused;
        restarts.push(spawned);
    }
    report.kills = kill_times.len();
    report.notes.push(format!(
        "{mid_stream} of {} kills were aimed 0–150 ms after a chunk was handed over",
        o.kills
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
                let got: HashSet<String> = d.rx.ids().into_iter().collect();
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
            serve = tokio::task::spawn_blocking(move || r.spawn_serve(&log))
                .await??
                .0;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    report.drain_time = drain_start.elapsed();
    // Let the last dead letters settle, then stop cleanly.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(serve.id() as i32, libc::SIGTERM) };
    let stop_deadline = Instant::now() + Duration::from_secs(20);
    let mut stopped = None;
    while Instant::now() < stop_deadline {
        if let Some(status) = serve.try_wait()? {
            stopped = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    match stopped {
        Some(status) if status.success() => {}
        Some(status) => report.failures.push(format!(
            "raxe serve did not stop cleanly on SIGTERM: {status}"
        )),
        None => {
            report
                .failures
                .push("raxe serve did not stop within 20 s of SIGTERM".into());
            let _ = serve.kill();
            let _ = serve.wait();
        }
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
        // `raxe dlq list` prints `?` as the id column: the stored event is in the queue's
        // compact form (`id`, not `event_id`). Take the id from the raw event instead.
        let mut id = cols[1].to_string();
        if id == "?" {
            if let Some(raw) = cols.get(3) {
                let v: serde_json::Value = serde_json::from_str(raw).unwrap_or_default();
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
        let lost: Vec<String> = {
            let mut v: Vec<String> = expected[i]
                .iter()
                .filter(|id| !unique.contains(id))
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
            delivered_unique: unique.len(),
            accepted_total: ids.len(),
            lost: lost.len(),
            lost_sample: lost.iter().take(10).cloned().collect(),
            duplicates: ids.len() - unique.len(),
            duplicate_bound: report.kills * o.batch_size,
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

fn check(d: &DestReport, failures: &mut Vec<String>) {
    let expected_handed = d.handed - d.poison.len();
    if d.lost > 0 {
        failures.push(format!(
            "{}: {} events lost (of {expected_handed}), e.g. {:?}",
            d.name, d.lost, d.lost_sample
        ));
    }
    if d.duplicates > d.duplicate_bound {
        failures.push(format!(
            "{}: {} duplicates, over the bound {} (kills × batch size × 1 in flight)",
            d.name, d.duplicates, d.duplicate_bound
        ));
    }
    let poison: Vec<&String> = d.poison.keys().collect();
    let dead: Vec<&String> = d.dead_lettered.iter().collect();
    if poison != dead {
        failures.push(format!(
            "{}: dead letters {:?} differ from the poison events {:?}",
            d.name, d.dead_lettered, poison
        ));
    }
    if d.dead_letter_repeats > d.duplicate_bound {
        failures.push(format!(
            "{}: {} repeated dead letters, over the bound {}",
            d.name, d.dead_letter_repeats, d.duplicate_bound
        ));
    }
    if d.poison_delivered > 0 {
        failures.push(format!(
            "{}: {} poison events were accepted (the receiver must refuse them)",
            d.name, d.poison_delivered
        ));
    }
    if d.foreign > 0 {
        failures.push(format!(
            "{}: {} ids the harness never sent (or without an event id)",
            d.name, d.foreign
        ));
    }
}

/// Breaks the receivers at fixed fractions of the kill phase.
async fn fault_schedule(
    dests: Arc<Vec<Dest>>,
    raxe: Arc<Raxe>,
    log: Arc<Mutex<Vec<String>>>,
    reconfigures: Arc<Mutex<usize>>,
    batch: usize,
    phase: Duration,
) -> Result<Vec<String>> {
    let mut failures = Vec::new();
    let start = tokio::time::Instant::now();
    let at = |f: f64| start + phase.mul_f64(f);
    let note = |s: String| log.lock().unwrap().push(s);
    let http = |d: &Dest| d.kind.can_reject();

    tokio::time::sleep_until(at(0.10)).await;
    for d in dests.iter().filter(|d| http(d)) {
        for _ in 0..4 {
            d.rx.fault(Fault::Status {
                status: 503,
                code: 9,
                retry_after: None,
            });
        }
    }
    note("503 burst ×4 (http)".into());

    tokio::time::sleep_until(at(0.20)).await;
    for d in dests.iter().filter(|d| http(d)) {
        d.rx.fault(Fault::Status {
            status: 429,
            code: 9,
            retry_after: Some(1),
        });
    }
    note("429 + Retry-After: 1 (http)".into());

    // A rotated credential, fixed by reconfiguring while serve runs.
    tokio::time::sleep_until(at(0.30)).await;
    let rotate: Vec<&Dest> = dests
        .iter()
        .filter(|d| matches!(d.kind, DestKind::Splunk | DestKind::Sentinel))
        .collect();
    for d in &rotate {
        let new = if d.kind == DestKind::Sentinel {
            ROTATED_KEY
        } else {
            ROTATED_TOKEN
        };
        d.rx.set_token(new);
    }
    if !rotate.is_empty() {
        note(format!(
            "credential rotated at the SIEM ({}) then fixed with `raxe customer siem configure` 2 s later",
            rotate.iter().map(|d| d.kind.name()).collect::<Vec<_>>().join("+")
        ));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for d in &rotate {
        let new = if d.kind == DestKind::Sentinel {
            ROTATED_KEY
        } else {
            ROTATED_TOKEN
        };
        let args = d.configure_args(batch, Some(new), None);
        let r = raxe.clone();
        tokio::task::spawn_blocking(move || r.run_ok(&args)).await??;
        *reconfigures.lock().unwrap() += 1;
    }

    tokio::time::sleep_until(at(0.45)).await;
    for d in dests.iter() {
        d.rx.fault(Fault::Hang);
    }
    note(format!(
        "hang past the {TIMEOUT_SECS} s timeout (http) / 1 s read stall (syslog)"
    ));

    // The untrusted certificate: nothing may have got through; then trust the CA.
    tokio::time::sleep_until(at(0.50)).await;
    for d in dests.iter() {
        let Some(proxy) = &d.tls else { continue };
        let (through, refused) = (d.rx.count(), proxy.handshake_failures());
        note(format!(
            "TLS certificate from an unknown CA: {refused} handshakes refused by the client, {through} events got through, then fixed with --ca-cert"
        ));
        if through > 0 {
            failures.push(format!(
                "tls: {through} events delivered to a server whose certificate the client should have rejected"
            ));
        }
        if refused == 0 {
            failures.push("tls: the client never tried (and refused) the untrusted server".into());
        }
        let args = d.configure_args(batch, None, Some(&proxy.ca_pem));
        let r = raxe.clone();
        tokio::task::spawn_blocking(move || r.run_ok(&args)).await??;
        *reconfigures.lock().unwrap() += 1;
    }

    tokio::time::sleep_until(at(0.60)).await;
    for d in dests.iter().filter(|d| http(d)) {
        d.rx.fault(Fault::Reset);
        d.rx.fault(Fault::Reset);
    }
    note("connection reset ×2 (http)".into());

    tokio::time::sleep_until(at(0.75)).await;
    for d in dests.iter() {
        d.rx.fault(Fault::Slow(Duration::from_millis(1200)));
        d.rx.fault(Fault::Status {
            status: 500,
            code: 8,
            retry_after: None,
        });
    }
    note("slow answer 1.2 s + 500 (http) / read stall (syslog)".into());
    note("poison events answered 400 (http)".into());
    Ok(failures)
}
