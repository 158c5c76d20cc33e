//! Command-line options of `raxe-harness`.

use super::*;

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
