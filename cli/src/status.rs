//! `status.json`: the live figures of the process that holds the queues (`raxe serve`, or
//! a `raxe drain` without it), for commands that cannot open them meanwhile; after it
//! ends, what its run left (states, last deliveries).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use raxe_engine::EngineStats;
use serde_json::{json, Value};

use crate::data_dir::{write_replace, DataDir};

/// Who publishes: the service, or a `raxe drain` that holds the queues without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Serve,
    Drain,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Serve => "serve",
            Role::Drain => "drain",
        }
    }
}

/// What the last publisher wrote, read at once.
pub struct Published {
    /// The figures (`EngineStats` as JSON).
    pub stats: Value,
    /// When they were written (ms since the epoch).
    pub updated_ms: u64,
    pub role: Role,
    /// Whether the publisher still held the queues when it wrote them.
    pub running: bool,
}

impl Published {
    /// How long ago the figures were written, in ms.
    pub fn age_ms(&self) -> u64 {
        raxe_engine::audit::now_ms().saturating_sub(self.updated_ms)
    }
}

/// Publishes the figures and the spool the service reads (best effort: a failure is
/// logged, never fatal). `running`: the publisher still holds the queues.
pub fn write(data: &DataDir, stats: &EngineStats, role: Role, running: bool, spool: &Path) {
    let body = json!({
        "pid": std::process::id(),
        "role": role.name(),
        "running": running,
        "updated_ms": raxe_engine::audit::now_ms(),
        "spool": spool.to_string_lossy(),
        "stats": stats,
    });
    if let Err(e) = write_replace(&data.status_file(), body.to_string().as_bytes()) {
        tracing::warn!(error = %e, "cannot write status.json");
    }
}

/// `status.json` as the service (or a drain) last published it.
fn load(data: &DataDir) -> Result<Value> {
    let path = data.status_file();
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "another raxe process (the service, or a drain) holds the queues and has not published {} yet",
            path.display()
        )
    })?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not valid JSON", path.display()))
}

/// What the process holding the queues (or the last one) published.
pub fn read(data: &DataDir) -> Result<Published> {
    let status = load(data)?;
    let updated = status["updated_ms"].as_u64().unwrap_or(0);
    Ok(Published {
        updated_ms: updated,
        // Before `role` was published, only the service published.
        role: match status["role"].as_str() {
            Some("drain") => Role::Drain,
            _ => Role::Serve,
        },
        running: status["running"].as_bool().unwrap_or(false),
        stats: status["stats"].clone(),
    })
}

/// Whether a `raxe drain` (not the service) holds the queues, as it last published.
pub fn drain_holds(data: &DataDir) -> bool {
    read(data).is_ok_and(|p| p.role == Role::Drain && p.running)
}

/// The spool the running service reads (`serve --spool`), as it published it; else the
/// data directory's.
pub fn spool_dir(data: &DataDir) -> PathBuf {
    load(data)
        .ok()
        .and_then(|status| status["spool"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| data.spool_dir())
}
