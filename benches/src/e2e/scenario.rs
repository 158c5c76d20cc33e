//! One scenario run against a fresh `raxe serve`: a new data directory under /tmp,
//! destinations configured through the CLI, events fed through the spool, and the
//! receiver's count of distinct ids as the finish line. Figures for the raxe process come
//! from /proc while it is still alive.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::feed::{spool_pending, write_spool};
use super::peer::Buffer;
use super::raxe::{
    context_switches, cpu_seconds, cpu_times, peak_rss_mib, rss_mib, Raxe, Res, Serve, Target,
};
use super::receiver::{HttpKind, HttpReceiver, SyslogReceiver, Tally};

/// A receiver, held only to keep it alive for the scenario's length.
pub(super) type Rx = Box<dyn std::any::Any>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    Hec,
    Sentinel,
    CefTcp,
}

pub struct Ctx<'a> {
    pub rt: &'a tokio::runtime::Runtime,
    pub bin: PathBuf,
    pub wrap: Option<String>,
    pub per_file: usize,
    pub flush_secs: u64,
    pub max_in_flight: Option<usize>,
    /// HEC `--compression`; raxe's default when `None`.
    pub compression: Option<String>,
    pub keep: bool,
}

/// The runtime a test's receivers run on (see [`Ctx::for_peer`]).
#[cfg(test)]
pub fn test_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

impl<'a> Ctx<'a> {
    /// For the syslog-ng peer alone (tests): no raxe binary, `per_file` lines a file.
    #[cfg(test)]
    pub fn for_peer(rt: &'a tokio::runtime::Runtime, per_file: usize) -> Ctx<'a> {
        Ctx {
            rt,
            bin: PathBuf::from("/nonexistent/raxe"),
            wrap: None,
            per_file,
            flush_secs: 1,
            max_in_flight: None,
            compression: None,
            keep: false,
        }
    }
}

/// What one throughput run measured.
#[derive(Clone, Debug, Default)]
pub struct Run {
    pub events: usize,
    pub wall_s: f64,
    pub events_per_s: f64,
    pub mb_per_s: f64,
    pub p50_s: f64,
    pub p99_s: f64,
    pub rss_mib: f64,
    pub cpu_per_m: f64,
    pub duplicates: usize,
    /// Scenario-specific extras (restart and idle figures), by name.
    pub extra: Vec<(&'static str, f64)>,
}

pub(super) struct Env {
    dir: tempfile::TempDir,
    raxe: Raxe,
}

impl Env {
    pub(super) fn new(ctx: &Ctx) -> Res<Env> {
        let dir = tempfile::Builder::new()
            .prefix("raxe-e2e-")
            .tempdir_in("/tmp")
            .map_err(|e| e.to_string())?;
        let raxe = Raxe {
            bin: ctx.bin.clone(),
            data: dir.path().join("data"),
            wrap: ctx.wrap.clone(),
        };
        Ok(Env { dir, raxe })
    }

    pub(super) fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn spool(&self) -> PathBuf {
        self.raxe.data.join("spool")
    }

    pub(super) fn finish(self, keep: bool) {
        if keep {
            let path = self.dir.keep();
            println!("  (kept {})", path.display());
        }
    }
}

pub(super) fn start_rx(ctx: &Ctx, sink: Sink, tally: &Arc<Tally>) -> Res<(Rx, Target)> {
    let t = tally.clone();
    ctx.rt.block_on(async move {
        Ok(match sink {
            Sink::Hec | Sink::Sentinel => {
                let kind = if sink == Sink::Hec {
                    HttpKind::Hec
                } else {
                    HttpKind::Sentinel
                };
                let rx = HttpReceiver::start(kind, t)
                    .await
                    .map_err(|e| e.to_string())?;
                let target = match kind {
                    HttpKind::Hec => Target::Hec(rx.url()),
                    HttpKind::Sentinel => Target::Sentinel(rx.url()),
                };
                (Box::new(rx) as Rx, target)
            }
            Sink::CefTcp => {
                let rx = SyslogReceiver::start(t).await.map_err(|e| e.to_string())?;
                let port = rx.addr.port();
                (Box::new(rx) as Rx, Target::CefTcp(port))
            }
        })
    })
}

/// Waits until `tally` counted `n` distinct events; fails after `stall` without progress.
/// Returns when the last one arrived.
pub(super) fn wait_distinct(tally: &Tally, n: usize, stall: Duration, log: &Path) -> Res<Instant> {
    let mut last = (tally.distinct(), Instant::now());
    loop {
        let d = tally.distinct();
        if d >= n {
            return Ok(Instant::now());
        }
        if d != last.0 {
            last = (d, Instant::now());
        } else if last.1.elapsed() > stall {
            return Err(format!(
                "stalled at {d} of {n} events for {stall:?}; see {}",
                log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

pub(super) fn configure_all(env: &Env, ctx: &Ctx, dests: usize, target: &Target) -> Res<()> {
    (0..dests).try_for_each(|i| env.raxe.configure(i, target, ctx))
}

/// Throughput and latency: `n` events spread over `dests` customer destinations of one
/// kind, all pointing at one counting receiver. `pace` caps the feed rate (events/s).
pub fn throughput(ctx: &Ctx, sink: Sink, dests: usize, n: usize, pace: Option<f64>) -> Res<Run> {
    feed_and_measure(ctx, sink, dests, n, pace, |_, _, _| {})
}

/// [`throughput`], calling `tick(seconds since the feed began, the service's pid, tally)`
/// every few ms while the feed runs (for figures sampled over time).
pub(super) fn feed_and_measure(
    ctx: &Ctx,
    sink: Sink,
    dests: usize,
    n: usize,
    pace: Option<f64>,
    tick: impl FnMut(f64, u32, &Tally),
) -> Res<Run> {
    measure_feed(ctx, sink, dests, n, pace, tick, |env, target| {
        configure_all(env, ctx, dests, target)?;
        start_raxe(env, "serve.log")
    })
}

/// syslog-ng (see `peer.rs`) instead of raxe, measured the same way: one HEC
/// destination, the same events, spool and receiver.
pub fn peer_syslog_ng(ctx: &Ctx, buffer: Buffer, n: usize) -> Res<Run> {
    measure_feed(
        ctx,
        Sink::Hec,
        1,
        n,
        None,
        |_, _, _| {},
        |env, target| start_syslog_ng(env, ctx, target, buffer, "syslog-ng.log"),
    )
}

/// The process a feed is measured against, up and reading `spool`.
pub(super) struct UnderTest {
    pub serve: Serve,
    pub spool: PathBuf,
    /// Its output, named when it stalls.
    pub log: PathBuf,
}

/// `raxe serve` on `env`'s data directory (destinations configured already), up.
pub(super) fn start_raxe(env: &Env, log: &str) -> Res<UnderTest> {
    let log = env.log(log);
    let mut serve = env.raxe.spawn_serve(&log)?;
    env.raxe.wait_ready(&mut serve, Duration::from_secs(120))?;
    Ok(UnderTest {
        serve,
        spool: env.spool(),
        log,
    })
}

/// syslog-ng posting to `target` (a HEC receiver), its files in `env`'s directory: a
/// second start finds the first one's persist file and disk buffer.
pub(super) fn start_syslog_ng(
    env: &Env,
    ctx: &Ctx,
    target: &Target,
    buffer: Buffer,
    log: &str,
) -> Res<UnderTest> {
    let Target::Hec(url) = target else {
        return Err("the syslog-ng peer posts to a HEC receiver only".into());
    };
    let log = env.log(log);
    let dir = env.dir.path().join("syslog-ng");
    let (serve, spool) = super::peer::start_syslog_ng(&dir, buffer, url, ctx.flush_secs, &log)?;
    Ok(UnderTest { serve, spool, log })
}

/// Starts a receiver and, through `start`, the process under test on a fresh `Env`; feeds
/// `n` events over `dests` customers into its spool and measures until the receiver has
/// every one.
fn measure_feed(
    ctx: &Ctx,
    sink: Sink,
    dests: usize,
    n: usize,
    pace: Option<f64>,
    mut tick: impl FnMut(f64, u32, &Tally),
    start: impl FnOnce(&Env, &Target) -> Res<UnderTest>,
) -> Res<Run> {
    let env = Env::new(ctx)?;
    let tally = Tally::new(n, ctx.per_file);
    let (_rx, target) = start_rx(ctx, sink, &tally)?;
    let UnderTest { serve, spool, log } = start(&env, &target)?;
    let pid = serve.pid();
    let (user0, sys0) = cpu_times(pid);
    let (voluntary0, involuntary0) = context_switches(pid);
    let started = Instant::now();
    let (feeder_tally, per_file) = (tally.clone(), ctx.per_file);
    let feeder = std::thread::spawn(move || {
        write_spool(&spool, &feeder_tally, 0..n, per_file, dests, pace).map_err(|e| e.to_string())
    });
    while !feeder.is_finished() {
        tick(started.elapsed().as_secs_f64(), pid, &tally);
        // Short: the finish line is read after the feed ends, and must not be late.
        std::thread::sleep(Duration::from_millis(5));
    }
    let bytes = feeder.join().map_err(|_| "feeder panicked".to_string())??;
    let done = match wait_distinct(&tally, n, Duration::from_secs(120), &log) {
        Ok(t) => t,
        Err(e) => {
            serve.stop(Duration::from_secs(10));
            env.finish(true);
            return Err(e);
        }
    };
    let wall = done.duration_since(started).as_secs_f64();
    let (user1, sys1) = cpu_times(pid);
    let (voluntary1, involuntary1) = context_switches(pid);
    let (user, sys) = (user1 - user0, sys1 - sys0);
    let cpu = user + sys;
    let rss = peak_rss_mib(pid);
    // Let stray retries land before counting duplicates.
    std::thread::sleep(Duration::from_millis(200));
    serve.stop(Duration::from_secs(120));
    let (p50, p99) = tally.latency_p50_p99();
    let run = Run {
        events: n,
        wall_s: wall,
        events_per_s: n as f64 / wall,
        mb_per_s: bytes as f64 / wall / 1e6,
        p50_s: p50,
        p99_s: p99,
        rss_mib: rss,
        cpu_per_m: cpu / n as f64 * 1e6,
        duplicates: tally.received().saturating_sub(n),
        extra: vec![
            ("bytes/event", bytes as f64 / n as f64),
            ("user CPU-s/M", user / n as f64 * 1e6),
            ("system CPU-s/M", sys / n as f64 * 1e6),
            (
                "voluntary switches per 1k events",
                voluntary1.saturating_sub(voluntary0) as f64 / n as f64 * 1e3,
            ),
            (
                "involuntary switches per 1k events",
                involuntary1.saturating_sub(involuntary0) as f64 / n as f64 * 1e3,
            ),
        ],
    };
    env.finish(ctx.keep);
    Ok(run)
}

/// 100 configured destinations and no events: the service's CPU over 10 s, % of a core.
pub fn idle(ctx: &Ctx, dests: usize, secs: u64) -> Res<Run> {
    let env = Env::new(ctx)?;
    let tally = Tally::new(1, 1);
    let (_rx, target) = start_rx(ctx, Sink::Hec, &tally)?;
    configure_all(&env, ctx, dests, &target)?;
    let log = env.log("serve.log");
    let mut serve = env.raxe.spawn_serve(&log)?;
    env.raxe.wait_ready(&mut serve, Duration::from_secs(120))?;
    std::thread::sleep(Duration::from_secs(2)); // start-up work is not idle cost
    let pid = serve.pid();
    let cpu0 = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(secs));
    let cpu = cpu_seconds(pid) - cpu0;
    let rss = peak_rss_mib(pid);
    serve.stop(Duration::from_secs(30));
    env.finish(ctx.keep);
    Ok(Run {
        rss_mib: rss,
        extra: vec![
            ("idle % of a core", cpu / secs as f64 * 100.0),
            (
                "requests",
                tally.requests.load(std::sync::atomic::Ordering::Relaxed) as f64,
            ),
        ],
        ..Run::default()
    })
}

pub(super) fn wait_first(tally: &Tally, since: Instant, timeout: Duration) -> Res<f64> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(t) = tally.first_receipt() {
            return Ok(t.saturating_duration_since(since).as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Err("no delivery after restart".into())
}

/// Queue `n` events while the SIEM answers 503, kill -9; restart with the SIEM healthy
/// (time to first delivery); kill -9 again half-way through delivery and restart
/// (time to first delivery, duplicates at the end).
pub fn restart(ctx: &Ctx, n: usize) -> Res<Run> {
    let env = Env::new(ctx)?;
    let tally = Tally::new(n, ctx.per_file);
    tally.set_refuse(true);
    let (_rx, target) = start_rx(ctx, Sink::Hec, &tally)?;
    configure_all(&env, ctx, 1, &target)?;
    let log = env.log("serve.log");
    let mut serve = env.raxe.spawn_serve(&log)?;
    env.raxe.wait_ready(&mut serve, Duration::from_secs(120))?;
    let started = Instant::now();
    let intake_cpu0 = cpu_seconds(serve.pid());
    // Queue in quarters, reading the RSS at each depth: memory should stay flat as the
    // queue grows.
    let mut bytes = 0;
    let mut rss_at = Vec::new();
    let quarter = ((n / 4).div_ceil(ctx.per_file) * ctx.per_file).max(1);
    let mut from = 0;
    while from < n {
        let to = (from + quarter).min(n);
        bytes += write_spool(&env.spool(), &tally, from..to, ctx.per_file, 1, None)
            .map_err(|e| e.to_string())?;
        while spool_pending(&env.spool()) > 0 {
            if started.elapsed() > Duration::from_secs(1800) {
                return Err("spool not drained into the queue in 30 min".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        rss_at.push(rss_mib(serve.pid()));
        from = to;
    }
    let queued_s = started.elapsed().as_secs_f64();
    // The service's CPU while only intake runs (the refused destination retries on its
    // backoff schedule beside it).
    let intake_cpu = cpu_seconds(serve.pid()) - intake_cpu0;
    let rss_queued = peak_rss_mib(serve.pid());
    serve.kill9();

    tally.set_refuse(false);
    tally.arm();
    let serve = env.raxe.spawn_serve(&env.log("serve2.log"))?;
    let first1 = wait_first(&tally, serve.started, Duration::from_secs(120))?;
    // The service's CPU while only delivery runs, from its first delivery to half-way.
    let (delivery_cpu0, delivered0) = (cpu_seconds(serve.pid()), tally.distinct());
    let half = Instant::now();
    while tally.distinct() < n / 2 {
        if half.elapsed() > Duration::from_secs(600) {
            return Err("restart: half not delivered in 10 min".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let delivery_cpu = cpu_seconds(serve.pid()) - delivery_cpu0;
    let delivered = tally.distinct().saturating_sub(delivered0).max(1);
    serve.kill9();
    let before_second = tally.received();
    std::thread::sleep(Duration::from_millis(50));
    tally.arm();
    let serve = env.raxe.spawn_serve(&env.log("serve3.log"))?;
    let first2 = wait_first(&tally, serve.started, Duration::from_secs(120))?;
    let log3 = env.log("serve3.log");
    wait_distinct(&tally, n, Duration::from_secs(120), &log3)?;
    let rss_after = peak_rss_mib(serve.pid());
    std::thread::sleep(Duration::from_millis(500));
    serve.stop(Duration::from_secs(60));
    let run = Run {
        events: n,
        wall_s: queued_s,
        events_per_s: n as f64 / queued_s,
        mb_per_s: bytes as f64 / queued_s / 1e6,
        p50_s: f64::NAN,
        p99_s: f64::NAN,
        rss_mib: rss_queued.max(rss_after),
        cpu_per_m: f64::NAN,
        duplicates: tally.received().saturating_sub(n),
        extra: vec![
            (
                "RSS MiB at 1/4 queued",
                rss_at.first().copied().unwrap_or(f64::NAN),
            ),
            (
                "RSS MiB at 1/2 queued",
                rss_at.get(1).copied().unwrap_or(f64::NAN),
            ),
            (
                "RSS MiB at 3/4 queued",
                rss_at.get(2).copied().unwrap_or(f64::NAN),
            ),
            ("RSS MiB (peak) with all queued (1st process)", rss_queued),
            (
                "intake CPU-s/M (spool into queue, SIEM down)",
                intake_cpu / n as f64 * 1e6,
            ),
            (
                "delivery CPU-s/M (from the full queue, no intake)",
                delivery_cpu / delivered as f64 * 1e6,
            ),
            ("RSS MiB delivering from full queue", rss_after),
            ("first delivery after restart 1 (queue full) s", first1),
            ("first delivery after kill mid-delivery s", first2),
            ("received before 2nd kill", before_second as f64),
        ],
    };
    env.finish(ctx.keep);
    Ok(run)
}
