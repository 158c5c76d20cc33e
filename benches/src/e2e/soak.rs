//! Soak: a steady feed to one HEC destination for many minutes, sampling the service's
//! memory. A leak shows as growth over time; a 1M-event run ends before a slow one does
//! (one that kept an empty lease per batch grew ~0.5 GB/h and passed every such run).

use std::time::Duration;

use super::raxe::{rss_mib, Res};
use super::scenario::{feed_and_measure, Ctx, Run, Sink};

/// How often the service's RSS is read.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Samples before this are start-up (caches filling) and left out of the slope.
const WARM_UP: Duration = Duration::from_secs(60);

/// `rate` events/s for `minutes`, then until all are delivered. Extras beside
/// [`super::scenario::throughput`]'s: RSS over the first and last minute (medians), its
/// growth in MiB per hour (least squares after warm-up), and the largest backlog seen
/// (events fed but not yet received).
pub fn soak(ctx: &Ctx, rate: f64, minutes: f64) -> Res<Run> {
    let n = ((rate * minutes * 60.0) as usize).div_ceil(ctx.per_file) * ctx.per_file;
    let mut samples: Vec<(f64, f64)> = Vec::new();
    let mut backlog = 0usize;
    let mut run = feed_and_measure(ctx, Sink::Hec, 1, n, Some(rate), |t, pid, tally| {
        let due = samples.len() as f64 * SAMPLE_EVERY.as_secs_f64();
        if t >= due {
            samples.push((t, rss_mib(pid)));
            let fed = ((rate * t) as usize).min(n);
            backlog = backlog.max(fed.saturating_sub(tally.distinct()));
        }
    })?;
    let end = samples.last().map_or(0.0, |s| s.0);
    let minute = |from: f64, to: f64| {
        super::median(
            samples
                .iter()
                .filter(|s| s.0 >= from && s.0 < to)
                .map(|s| s.1)
                .collect(),
        )
    };
    let steady: Vec<(f64, f64)> = samples
        .iter()
        .copied()
        .filter(|s| s.0 >= WARM_UP.as_secs_f64())
        .collect();
    run.extra.extend([
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
    ]);
    Ok(run)
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
        assert_eq!(super::super::median(vec![3.0, f64::NAN, 1.0, 2.0]), 2.0);
    }
}
