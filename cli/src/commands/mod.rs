//! The commands. Each opens what it needs and prints for humans (or `--json`).

pub mod drain;
pub mod ops;
pub mod repair;
pub mod siem;

use std::collections::HashMap;

use anyhow::Result;
use serde_json::Value;

use crate::data_dir::DataDir;
use crate::host::{Host, OpenError};
use crate::status;

/// Live figures: straight from the queues when no service runs, else the service's
/// `status.json`. The flag says which.
pub fn live_stats(data: &DataDir) -> Result<(Value, Source)> {
    match Host::open(data.clone()) {
        Ok(host) => {
            let mut stats = serde_json::to_value(host.dispatcher.stats())?;
            // A destination opened here has not sent anything yet: "ok" would say nothing.
            // What the last run (the service, or `drain`) found is the news.
            let last_run_ms_ago = status::read(data).ok().map(|published| {
                let (age_ms, as_of) = (published.age_ms(), published.updated_ms);
                let (records, _) = host.configs.list().unwrap_or_default();
                let changed: HashMap<String, u64> = records
                    .iter()
                    .filter_map(|r| Some((r.id(), host.configs.changed_ms(&r.scope)?)))
                    .collect();
                keep_last_states(&mut stats, &published.stats, as_of, |id| {
                    changed.get(id).copied()
                });
                age_ms
            });
            Ok((stats, Source::Queues { last_run_ms_ago }))
        }
        Err(OpenError::InUse(_)) => {
            let published = status::read(data)?;
            let source = Source::Service {
                age_ms: published.age_ms(),
                drain: published.role == status::Role::Drain,
                running: published.running,
            };
            Ok((published.stats, source))
        }
        Err(OpenError::Other(e)) => Err(e),
    }
}

/// Takes each destination's state and last delivery and error from `last` (the figures the
/// last run published at `as_of`, ms since the epoch) into `stats` (read from the queues by
/// a process that sent nothing), marked with `state_as_of_ms`. Not for a destination
/// configured since (`changed`: when its file changed), nor to or from `disabled`, which
/// the configuration says now.
fn keep_last_states(
    stats: &mut Value,
    last: &Value,
    as_of: u64,
    changed: impl Fn(&str) -> Option<u64>,
) {
    let Some(destinations) = stats["destinations"].as_array_mut() else {
        return;
    };
    let disabled = |d: &Value| d["state"]["state"] == "disabled";
    for dest in destinations {
        let id = dest["id"].as_str().unwrap_or_default();
        let found = last["destinations"]
            .as_array()
            .and_then(|all| all.iter().find(|d| d["id"] == id));
        let Some(found) = found else { continue };
        let configured_since = changed(id).is_none_or(|ms| ms >= as_of);
        if configured_since || disabled(dest) || disabled(found) {
            continue;
        }
        dest["state"] = found["state"].clone();
        dest["marks"] = found["marks"].clone();
        dest["state_as_of_ms"] = as_of.into();
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// No service runs; states are those of the last run, if one published them.
    Queues { last_run_ms_ago: Option<u64> },
    /// The process that holds the queues published these (`serve`, or a `drain`); one
    /// that has not published yet (`running` false) left the last run's.
    Service {
        age_ms: u64,
        drain: bool,
        running: bool,
    },
}

impl Source {
    pub fn describe(self) -> String {
        match self {
            Source::Queues {
                last_run_ms_ago: None,
            } => "read from the queues; no service running".into(),
            Source::Queues {
                last_run_ms_ago: Some(ms),
            } => format!(
                "read from the queues; no service running; a state marked (last run) is as its last run left it, {} ago",
                human_age(ms as f64 / 1000.0)
            ),
            Source::Service {
                age_ms,
                drain,
                running: true,
            } => format!(
                "from the running {}, {:.1} s ago",
                if drain { "`raxe drain`" } else { "service" },
                age_ms as f64 / 1000.0
            ),
            Source::Service {
                age_ms,
                running: false,
                ..
            } => format!(
                "another raxe process holds the queues and has not published its figures yet; these are the last run's, {} ago",
                human_age(age_ms as f64 / 1000.0)
            ),
        }
    }
}

/// "1234 events (oldest 3.2 s)" from a serialized queue report.
pub fn describe_queue(queue: &Value) -> String {
    let events = queue["events"].as_u64().unwrap_or(0);
    match queue["oldest_age_seconds"].as_f64() {
        Some(age) if events > 0 => format!("{events} events (oldest {})", human_age(age)),
        _ => format!("{events} events"),
    }
}

pub fn human_age(seconds: f64) -> String {
    if seconds < 120.0 {
        format!("{seconds:.1} s")
    } else if seconds < 7200.0 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}
