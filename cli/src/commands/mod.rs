//! The commands. Each opens what it needs and prints for humans (or `--json`).

pub mod ops;
pub mod repair;
pub mod siem;

use anyhow::Result;
use serde_json::Value;

use crate::data_dir::DataDir;
use crate::host::{Host, OpenError};
use crate::status;

/// Live figures: straight from the queues when no service runs, else the service's
/// `status.json`. The flag says which.
pub fn live_stats(data: &DataDir) -> Result<(Value, Source)> {
    match Host::open(data.clone()) {
        Ok(host) => Ok((
            serde_json::to_value(host.dispatcher.stats())?,
            Source::Queues,
        )),
        Err(OpenError::InUse(_)) => {
            let (stats, age_ms) = status::read(data)?;
            Ok((stats, Source::Service { age_ms }))
        }
        Err(OpenError::Other(e)) => Err(e),
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Source {
    Queues,
    Service { age_ms: u64 },
}

impl Source {
    pub fn describe(self) -> String {
        match self {
            Source::Queues => "read from the queues; no service running".into(),
            Source::Service { age_ms } => {
                format!(
                    "from the running service, {:.1} s ago",
                    age_ms as f64 / 1000.0
                )
            }
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
