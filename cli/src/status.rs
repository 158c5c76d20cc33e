//! `status.json`: the running service's live figures, for commands that cannot open the
//! queues while `raxe serve` holds them.

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

/// `status.json` as the service last published it.
fn load(data: &DataDir) -> Result<Value> {
    let path = data.status_file();
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "the service holds the queues and has not published {} yet",
            path.display()
        )
    })?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not valid JSON", path.display()))
}

/// What the process holding the queues last published: "serve" or "drain", and whether
/// it still ran then (`None` without a readable file).
pub fn publisher(data: &DataDir) -> Option<(String, bool)> {
    let status = load(data).ok()?;
    // Before `role` was published, only the service published while it ran.
    let role = status["role"].as_str().unwrap_or("serve").to_string();
    Some((role, status["running"].as_bool().unwrap_or(false)))
}

/// The service's last published figures (`stats` part), and how old they are in ms.
pub fn read(data: &DataDir) -> Result<(Value, u64)> {
    let status = load(data)?;
    let updated = status["updated_ms"].as_u64().unwrap_or(0);
    let age = raxe_engine::audit::now_ms().saturating_sub(updated);
    Ok((status["stats"].clone(), age))
}

/// The spool the running service reads (`serve --spool`), as it published it; else the
/// data directory's.
pub fn spool_dir(data: &DataDir) -> PathBuf {
    load(data)
        .ok()
        .and_then(|status| status["spool"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| data.spool_dir())
}
