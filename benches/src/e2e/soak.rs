//! Soak: a steady feed to one HEC destination for many minutes, sampling the service's
//! memory. A leak shows as growth over time; a 1M-event run ends before a slow one does
//! (one that kept an empty lease per batch grew ~0.5 GB/h and passed every such run).

use std::time::{Duration, Instant};

use super::feed::write_spool;
use super::raxe::Res;
use super::raxe::{cpu_times, peak_rss_mib, rss_mib};
use super::receiver::Tally;
use super::scenario::{configure_all, start_rx, wait_distinct, Ctx, Env, Run, Sink};

/// How often the service's RSS is read.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Samples before this are start-up (caches filling) and left out of the slope.
const WARM_UP: Duration = Duration::from_secs(60);

/// `rate` events/s for `minutes`, then until all are delivered. Extras: RSS over the first
/// and last minute (medians), its growth in MiB per hour (least squares after warm-up), and
/// the largest backlog seen (events fed but not yet received).
pub fn soak(ctx: &Ctx, rate: f64, minutes: f64) -> Res<Run> {
    let n = ((rate * minutes * 60.0) as usize).div_ceil(ctx.per_file) * ctx.per_file;
    let env = Env::new(ctx)?;
    let tally = Tally::new(n, ctx.per_file);
    let (_rx, target) = start_rx(ctx, Sink::Hec, &tally)?;
    configure_all(&env, ctx, 1, &target)?;
    let log = env.log("serve.log");
    let mut serve = env.raxe.spawn_serve(&log)?;
    env.raxe.wait_ready(&mut serve, Duration::from_secs(120))?;
    let pid = serve.pid();
    let (user0, sys0) = cpu_times(pid);
    let started = Instant::now();
    let (spool, feeder_tally, per_file) = (env.spool(), tally.clone(), ctx.per_file);
    let feeder = std::thread::spawn(move || {
        write_spool(&spool, &feeder_tally, 0..n, per_file, 1, Some(rate)).map_err(|e| e.to_string())
    });
    let mut samples: Vec<(f64, f64)> = Vec::new();
    let mut backlog = 0usize;
    let mut next = started;
    while !feeder.is_finished() {
        if Instant::now() >= next {
            let t = started.elapsed().as_secs_f64();
            samples.push((t, rss_mib(pid)));
            let fed = ((rate * t) as usize).min(n);
            backlog = backlog.max(fed.saturating_sub(tally.distinct()));
            next += SAMPLE_EVERY;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let bytes = feeder.join().map_err(|_| "feeder panicked".to_string())??;
    let done = wait_distinct(&tally, n, Duration::from_secs(120), &log);
    let done = match done {
        Ok(t) => t,
        Err(e) => {
            serve.stop(Duration::from_secs(10));
            env.finish(true);
            return Err(e);
        }
    };
    let wall = done.duration_since(started).as_secs_f64();
    let (user1, sys1) = cpu_times(pid);
    let cpu = (user1 - user0) + (sys1 - sys0);
    let peak = peak_rss_mib(pid);
    std::thread::sleep(Duration::from_millis(200));
    serve.stop(Duration::from_secs(120));
    let (p50, p99) = tally.latency_p50_p99();
    let end = samples.last().map_or(0.0, |s| s.0);
    let minute = |from: f64, to: f64| {
        median_of(
            samples
                .iter()
                .filter(|s| s.0 >= from && s.0 < to)
                .map(|s| s.1),
        )
    };
    let steady: Vec<(f64, f64)> = samples
        .iter()
        .copied()
        .filter(|s| s.0 >= WARM_UP.as_secs_f64())
        .collect();
    let run = Run {
        events: n,
        wall_s: wall,
        events_per_s: n as f64 / wall,
        mb_per_s: bytes as f64 / wall / 1e6,
        p50_s: p50,
        p99_s: p99,
        rss_mib: peak,
        cpu_per_m: cpu / n as f64 * 1e6,
        duplicates: tally.received().saturating_sub(n),
        extra: vec![
            ("minutes fed", end / 60.0),
            ("RSS MiB, first minute (median)", minute(0.0, 60.0)),
            (
                "RSS MiB, last minute (median)",
                minute(end - 60.0, end + 1.0),
            ),
            (
                "RSS growth after warm-up, MiB per hour",
                slope(&steady) * 3600.0,
            ),
            ("largest backlog (events)", backlog as f64),
        ],
    };
    env.finish(ctx.keep);
    Ok(run)
}

fn median_of(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Least-squares slope of (x, y) points; NaN with fewer than two distinct x.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(num, den), (x, y)| {
        (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
    });
    if den > 0.0 {
        num / den
    } else {
        f64::NAN
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn slope_of_a_line_and_of_too_few_points() {
        let line: Vec<(f64, f64)> = (0..10).map(|x| (x as f64, 3.0 + 0.5 * x as f64)).collect();
        assert!((super::slope(&line) - 0.5).abs() < 1e-9);
        assert!(super::slope(&line[..1]).is_nan());
        assert_eq!(super::median_of([3.0, f64::NAN, 1.0, 2.0].into_iter()), 2.0);
    }
}
