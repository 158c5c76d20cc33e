//! The end-to-end benchmark (issue #7): realistic events → spool → the real `raxe serve`
//! (durable: fdatasync before an event is accepted) → counting receivers on 127.0.0.1 in
//! this process. Prints, per scenario, medians over `--runs` of events/s, MB/s, p50/p99
//! latency from spool arrival to receipt, peak RSS and CPU-seconds per million events of
//! the raxe process, next to the machine's limits measured in the same run.

pub mod crash;
pub mod feed;
pub mod limits;
pub mod peer;
pub mod process_tree;
pub mod raxe;
pub mod receiver;
pub mod scenario;
pub mod soak;

use std::path::PathBuf;

use crash::Shipper;
use peer::Buffer;
use scenario::{Ctx, Run, Sink};

pub const USAGE: &str = "e2e_bench [--events N] [--runs R] [--quick] \
[--scenario all|hec1|hec1-half|hec10|hec100|cef-tcp|sentinel|idle|restart|soak|kill-mid-run|peer-syslog-ng[-mem][-kill][,..]] \
[--soak-minutes M] [--soak-rate EVENTS_PER_S] \
[--per-file LINES] [--flush-interval SECS] [--max-in-flight N] [--compression gzip|none] [--raxe PATH] [--against PATH] [--wrap \"CMD ARGS\"] [--keep] [--no-limits]";

pub struct Opts {
    pub events: usize,
    pub runs: usize,
    pub scenarios: Vec<String>,
    pub per_file: usize,
    pub flush_secs: u64,
    pub max_in_flight: Option<usize>,
    /// HEC `--compression` (raxe's default, gzip, when unset).
    pub compression: Option<String>,
    pub raxe: Option<PathBuf>,
    /// A second raxe binary: every run is made with both, in alternating order, and the
    /// two are compared pair by pair.
    pub against: Option<PathBuf>,
    pub wrap: Option<String>,
    pub keep: bool,
    pub limits: bool,
    /// `soak`: how long to feed, and at what rate.
    pub soak_minutes: f64,
    pub soak_rate: f64,
}

const ALL: [&str; 8] = [
    "hec1",
    "hec1-half",
    "hec10",
    "hec100",
    "cef-tcp",
    "sentinel",
    "idle",
    "restart",
];

const NAMED_ONLY: [&str; 6] = [
    "soak",
    "kill-mid-run",
    "peer-syslog-ng",
    "peer-syslog-ng-kill",
    "peer-syslog-ng-mem",
    "peer-syslog-ng-mem-kill",
];

pub fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        events: 1_000_000,
        runs: 3,
        scenarios: vec!["all".into()],
        per_file: 10_000,
        flush_secs: 1,
        max_in_flight: None,
        compression: None,
        raxe: None,
        against: None,
        wrap: None,
        keep: false,
        limits: true,
        soak_minutes: 10.0,
        soak_rate: 50_000.0,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let num = |v: String, name: &str| {
            v.replace('_', "")
                .parse::<usize>()
                .map_err(|_| format!("{name}: not a number: {v}"))
        };
        match a.as_str() {
            "--events" => o.events = num(value(a)?, a)?,
            "--runs" => o.runs = num(value(a)?, a)?.max(1),
            "--quick" => {
                o.events = 100_000;
                o.runs = 1;
            }
            "--scenario" => o.scenarios = value(a)?.split(',').map(str::to_string).collect(),
            "--per-file" => o.per_file = num(value(a)?, a)?.max(1),
            "--flush-interval" => o.flush_secs = num(value(a)?, a)? as u64,
            "--max-in-flight" => o.max_in_flight = Some(num(value(a)?, a)?.max(1)),
            "--compression" => o.compression = Some(value(a)?),
            "--raxe" => o.raxe = Some(PathBuf::from(value(a)?)),
            "--against" => o.against = Some(PathBuf::from(value(a)?)),
            "--wrap" => o.wrap = Some(value(a)?),
            "--keep" => o.keep = true,
            "--no-limits" => o.limits = false,
            "--soak-minutes" => o.soak_minutes = num(value(a)?, a)? as f64,
            "--soak-rate" => o.soak_rate = num(value(a)?, a)?.max(1) as f64,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if o.scenarios.iter().any(|s| s == "all") {
        o.scenarios = ALL.iter().map(|s| s.to_string()).collect();
    }
    // Named on their own, never part of `all`: `soak` runs for minutes, the `peer-` ones
    // measure syslog-ng, not raxe, and `kill-mid-run` is raxe's side of their kill test.
    if let Some(bad) = o
        .scenarios
        .iter()
        .find(|s| !ALL.contains(&s.as_str()) && !NAMED_ONLY.contains(&s.as_str()))
    {
        return Err(format!("unknown scenario {bad}\n{USAGE}"));
    }
    Ok(o)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Field-wise medians of several runs (extras matched by position).
fn med(runs: &[Run]) -> Run {
    let m = |f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
    let mut out = Run {
        events: runs[0].events,
        wall_s: m(|r| r.wall_s),
        events_per_s: m(|r| r.events_per_s),
        mb_per_s: m(|r| r.mb_per_s),
        p50_s: m(|r| r.p50_s),
        p99_s: m(|r| r.p99_s),
        rss_mib: m(|r| r.rss_mib),
        cpu_per_m: m(|r| r.cpu_per_m),
        duplicates: runs.iter().map(|r| r.duplicates).max().unwrap_or(0),
        extra: Vec::new(),
    };
    for (i, (name, _)) in runs[0].extra.iter().enumerate() {
        out.extra
            .push((name, median(runs.iter().map(|r| r.extra[i].1).collect())));
    }
    out
}

struct Limits {
    fsync100: f64,
    fsync1000: f64,
    rx1_eps: f64,
}

fn measure_limits(rt: &tokio::runtime::Runtime, when: &str) -> Result<Limits, String> {
    let dir = tempfile::Builder::new()
        .prefix("raxe-e2e-fsync-")
        .tempdir_in("/tmp")
        .map_err(|e| e.to_string())?;
    let f100 = limits::fdatasync_rate(dir.path(), 100, 3.0).map_err(|e| e.to_string())?;
    let f1000 = limits::fdatasync_rate(dir.path(), 1000, 3.0).map_err(|e| e.to_string())?;
    let c1 = rt.block_on(limits::receiver_ceiling(1, 2.0))?;
    let c4 = rt.block_on(limits::receiver_ceiling(4, 2.0))?;
    println!("machine limits, {when} (load avg {}):", loadavg());
    println!(
        "  append+fdatasync /tmp: 100-event batches {f100:.0}/s (= {:.0} events/s), 1000-event batches {f1000:.0}/s (= {:.0} events/s)",
        f100 * 100.0,
        f1000 * 1000.0
    );
    println!(
        "  receiver ceiling (gzip HEC bodies of 100 events, loopback): 1 connection {:.0} req/s = {:.0} events/s; 4 connections {:.0} req/s = {:.0} events/s",
        c1.requests_per_s, c1.events_per_s, c4.requests_per_s, c4.events_per_s
    );
    Ok(Limits {
        fsync100: f100 * 100.0,
        fsync1000: f1000 * 1000.0,
        rx1_eps: c1.events_per_s,
    })
}

fn ratio(x: f64, limit: Option<f64>) -> String {
    match limit {
        Some(l) if l > 0.0 && !x.is_nan() => format!("{:.0}%", x / l * 100.0),
        _ => "-".into(),
    }
}

pub fn main_with(opts: Opts) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let bin = raxe::locate(opts.raxe.as_deref())?;
    if opts.scenarios.iter().any(|s| s == "soak") {
        println!(
            "soak: {} events/s for {} min, one run (--events and --runs do not apply)",
            opts.soak_rate, opts.soak_minutes
        );
    }
    println!(
        "e2e_bench: {} events x {} runs, spool files of {} lines, batch 100, flush {} s, raxe {}{}",
        opts.events,
        opts.runs,
        opts.per_file,
        opts.flush_secs,
        bin.display(),
        opts.wrap
            .as_deref()
            .map(|w| format!(" under `{w}`"))
            .unwrap_or_default()
    );
    let first = if opts.limits {
        Some(measure_limits(&rt, "before")?)
    } else {
        None
    };
    let ctx_for = |bin: PathBuf| Ctx {
        rt: &rt,
        bin,
        wrap: opts.wrap.clone(),
        per_file: opts.per_file,
        flush_secs: opts.flush_secs,
        max_in_flight: opts.max_in_flight,
        compression: opts.compression.clone(),
        keep: opts.keep,
    };
    // Side 0 is --raxe (A), side 1 --against (B).
    let mut ctxs = vec![ctx_for(bin)];
    if let Some(other) = &opts.against {
        let other = raxe::locate(Some(other))?;
        println!("against {} (B; A is the binary above)", other.display());
        ctxs.push(ctx_for(other));
    }
    let label = |side: usize| match (ctxs.len(), side) {
        (1, _) => "",
        (_, 0) => " [A]",
        _ => " [B]",
    };
    let mut hec1_rate = None;
    let mut tables: Vec<Vec<(String, Option<Run>)>> = vec![Vec::new(); ctxs.len()];
    let mut pairs: Vec<(String, Vec<(Run, Run)>)> = Vec::new();
    for name in &opts.scenarios {
        let mut runs: Vec<Vec<Run>> = vec![Vec::new(); ctxs.len()];
        let mut paired = Vec::new();
        // A soak is one long run.
        let repeats = if name == "soak" { 1 } else { opts.runs };
        for r in 0..repeats {
            // Which binary goes first alternates: a machine that speeds up or slows down
            // during a pair favours neither.
            let mut order: Vec<usize> = (0..ctxs.len()).collect();
            if r % 2 == 1 {
                order.reverse();
            }
            let mut this: Vec<Option<Run>> = vec![None; ctxs.len()];
            for side in order {
                match run_scenario(&ctxs[side], name, &opts, &mut hec1_rate) {
                    Ok(run) => {
                        println!(
                            "  {name} run {}{}: {} (load avg {})",
                            r + 1,
                            label(side),
                            run_summary(&run),
                            loadavg()
                        );
                        this[side] = Some(run.clone());
                        runs[side].push(run)
                    }
                    Err(e) => eprintln!("{name} run {}{}: {e}", r + 1, label(side)),
                }
            }
            if let [Some(a), Some(b)] = &this[..] {
                paired.push((a.clone(), b.clone()));
            }
        }
        for (side, runs) in runs.iter().enumerate() {
            let m = (!runs.is_empty()).then(|| med(runs));
            if let (Some(m), "hec1", 0) = (&m, name.as_str(), side) {
                hec1_rate = Some(m.events_per_s);
            }
            tables[side].push((name.clone(), m));
        }
        pairs.push((name.clone(), paired));
    }
    // Limits again: other load on the machine moves them; ratios use the better of the two.
    let limits = match first {
        Some(a) => {
            let b = measure_limits(&rt, "after")?;
            Some(Limits {
                fsync100: a.fsync100.max(b.fsync100),
                fsync1000: a.fsync1000.max(b.fsync1000),
                rx1_eps: a.rx1_eps.max(b.rx1_eps),
            })
        }
        None => None,
    };
    for (side, table) in tables.iter().enumerate() {
        if ctxs.len() > 1 {
            println!("{}:", label(side).trim());
        }
        print_table(table, limits.as_ref(), opts.runs);
    }
    if ctxs.len() > 1 {
        print_comparison(&pairs);
    }
    println!("load avg at end: {}", loadavg());
    Ok(())
}

/// One run's headline figures, leaving out those its scenario does not measure.
fn run_summary(run: &Run) -> String {
    let mut parts = Vec::new();
    // `idle` feeds no events: it has no per-event figures.
    let per_event = run.events > 0;
    if per_event && run.events_per_s.is_finite() {
        parts.push(format!("{:.0} events/s", run.events_per_s));
    }
    if per_event && run.p99_s.is_finite() {
        parts.push(format!("p99 {:.3} s", run.p99_s));
    }
    parts.push(format!("RSS {:.1} MiB", run.rss_mib));
    if per_event && run.cpu_per_m.is_finite() {
        parts.push(format!("{:.2} CPU-s/M", run.cpu_per_m));
    }
    if per_event {
        parts.push(format!("{} duplicates", run.duplicates));
    }
    parts.join(", ")
}

/// One run of scenario `name` with `ctx`'s binary.
fn run_scenario(
    ctx: &Ctx<'_>,
    name: &str,
    opts: &Opts,
    hec1_rate: &mut Option<f64>,
) -> Result<Run, String> {
    let n = opts.events;
    match name {
        "hec1" => scenario::throughput(ctx, Sink::Hec, 1, n, None),
        "hec1-half" => {
            // Half the maximum rate: the median hec1 rate if measured, else hec1 now.
            let max = match *hec1_rate {
                Some(r) => r,
                None => {
                    let r = scenario::throughput(ctx, Sink::Hec, 1, n, None)?.events_per_s;
                    *hec1_rate = Some(r);
                    r
                }
            };
            scenario::throughput(ctx, Sink::Hec, 1, n, Some(max / 2.0))
        }
        "hec10" => scenario::throughput(ctx, Sink::Hec, 10, n, None),
        "hec100" => scenario::throughput(ctx, Sink::Hec, 100, n, None),
        "cef-tcp" => scenario::throughput(ctx, Sink::CefTcp, 1, n, None),
        "sentinel" => scenario::throughput(ctx, Sink::Sentinel, 1, n, None),
        "idle" => scenario::idle(ctx, 100, 10),
        "restart" => scenario::restart(ctx, n),
        "soak" => soak::soak(ctx, opts.soak_rate, opts.soak_minutes),
        "kill-mid-run" => crash::kill_mid_run(ctx, Shipper::Raxe, n, None),
        "peer-syslog-ng" => scenario::peer_syslog_ng(ctx, Buffer::Disk, n),
        "peer-syslog-ng-mem" => scenario::peer_syslog_ng(ctx, Buffer::Memory, n),
        "peer-syslog-ng-kill" => crash::kill_mid_run(ctx, Shipper::SyslogNg(Buffer::Disk), n, None),
        "peer-syslog-ng-mem-kill" => {
            crash::kill_mid_run(ctx, Shipper::SyslogNg(Buffer::Memory), n, None)
        }
        _ => unreachable!("checked in parse"),
    }
}

/// B against A, pair by pair (runs made back to back): the median ratio, and in how many
/// pairs B was ahead. Single runs spread 10-25% on a shared 2-core machine; pairs cancel
/// most of the drift.
fn print_comparison(pairs: &[(String, Vec<(Run, Run)>)]) {
    println!("B against A, pair by pair:");
    for line in comparison_lines(pairs) {
        println!("  {line}");
    }
}

fn comparison_lines(pairs: &[(String, Vec<(Run, Run)>)]) -> Vec<String> {
    let mut lines = Vec::new();
    for (name, paired) in pairs {
        if paired.is_empty() {
            continue;
        }
        let n = paired.len();
        let ratios = |of: fn(&Run) -> f64| -> Vec<f64> {
            paired.iter().map(|(a, b)| of(b) / of(a)).collect()
        };
        let (rate, cpu) = (ratios(|r| r.events_per_s), ratios(|r| r.cpu_per_m));
        let ahead = rate.iter().filter(|r| **r > 1.0).count();
        let leaner = cpu.iter().filter(|r| **r < 1.0).count();
        let (rate, cpu) = (median(rate), median(cpu));
        let mut parts = Vec::new();
        if rate.is_finite() {
            parts.push(format!(
                "events/s B/A {rate:.3} (B ahead in {ahead} of {n})"
            ));
        }
        if cpu.is_finite() {
            parts.push(format!("CPU-s/M B/A {cpu:.3} (B lower in {leaner} of {n})"));
        }
        if parts.is_empty() {
            // idle: compare its figures in the tables above.
            continue;
        }
        lines.push(format!("{name:<10} {}", parts.join("; ")));
    }
    lines
}

fn print_table(table: &[(String, Option<Run>)], limits: Option<&Limits>, runs: usize) {
    println!("medians of {runs} run(s):");
    println!(
        "{:<10} {:>10} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8} {:>5}",
        "scenario",
        "events/s",
        "MB/s",
        "%fsync",
        "%rx",
        "p50 s",
        "p99 s",
        "RSS MiB",
        "CPU-s/M",
        "dups"
    );
    for (name, m) in table {
        let Some(m) = m else {
            println!("{name:<10} failed");
            continue;
        };
        let f = |x: f64, p: usize| {
            if x.is_nan() || (x == 0.0 && m.events == 0) {
                "-".to_string()
            } else {
                format!("{x:.p$}")
            }
        };
        let eps = if m.events == 0 {
            f64::NAN
        } else {
            m.events_per_s
        };
        // The restart row's rate is spool -> durable queue (the SIEM is down), whose
        // durable step is a chunk of 1,000 events.
        let fsync = limits.map(|l| {
            if name == "restart" {
                l.fsync1000
            } else {
                l.fsync100
            }
        });
        println!(
            "{:<10} {:>10} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8} {:>5}",
            name,
            f(eps, 0),
            f(m.mb_per_s, 1),
            ratio(eps, fsync),
            ratio(eps, limits.map(|l| l.rx1_eps)),
            f(m.p50_s, 3),
            f(m.p99_s, 3),
            f(m.rss_mib, 1),
            f(m.cpu_per_m, 2),
            m.duplicates
        );
        for (k, v) in &m.extra {
            println!("{:<10}   {k}: {v:.3}", "");
        }
    }
    if let Some(l) = limits {
        println!(
            "%fsync = events/s / raw append+fdatasync events/s at batch 100 ({:.0}; restart row: batch 1000, {:.0}); %rx = / receiver ceiling on 1 connection ({:.0} events/s)",
            l.fsync100, l.fsync1000, l.rx1_eps
        );
    }
    println!("p50/p99 at full speed include the backlog of a feed faster than delivery; hec1-half is the latency figure. restart: events/s = spool into durable queue with the SIEM down");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(events_per_s: f64, cpu_per_m: f64) -> Run {
        Run {
            events: 1000,
            events_per_s,
            cpu_per_m,
            ..Run::default()
        }
    }

    #[test]
    fn against_compares_pair_by_pair() {
        let args: Vec<String> = ["--against", "/bin/b", "--scenario", "hec1,idle"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let opts = parse(&args).unwrap();
        assert_eq!(opts.against, Some(PathBuf::from("/bin/b")));
        let pairs = vec![
            (
                "hec1".to_string(),
                vec![
                    (run(100.0, 6.0), run(110.0, 5.7)),
                    (run(120.0, 6.0), run(114.0, 6.3)),
                    (run(100.0, 6.0), run(105.0, 5.4)),
                ],
            ),
            // idle has no rate and no CPU per event: nothing to compare pair by pair.
            (
                "idle".to_string(),
                vec![(run(f64::NAN, f64::NAN), run(f64::NAN, f64::NAN))],
            ),
        ];
        assert_eq!(
            comparison_lines(&pairs),
            ["hec1       events/s B/A 1.050 (B ahead in 2 of 3); CPU-s/M B/A 0.950 (B lower in 2 of 3)"]
        );
    }
}
