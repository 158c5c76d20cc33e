//! `status.json`: the running service's live figures, for commands that cannot open the
//! queues while `raxe serve` holds them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use raxe_engine::EngineStats;
use serde_json::{json, Value};

use crate::data_dir::{write_replace, DataDir};

/// Publishes the figures and the spool the service reads (best effort: a failure is
/// logged, never fatal).
pub fn write(data: &DataDir, stats: &EngineStats, running: bool, spool: &Path) {
    let body = json!({
        "pid": std::process::id(),
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
