//! The running service's control socket.
//!
//! While `raxe serve` holds the data directory, commands that need the queues themselves
//! (dead letters, dropping a removed destination's queue) cannot open them: they send their
//! request to the service instead, which runs it against the engine it owns. The socket
//! lives in the data directory (mode 0700, the socket itself 0600), so only the owner of the
//! data can connect. One JSON request line in, one JSON response line out, then close.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use raxe_engine::{queue_names, EngineError, RemovePolicy};
use raxe_storage::QueueStore;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

use crate::args::DlqCommand;
use crate::data_dir::DataDir;
use crate::host::Host;

/// Longest request line accepted.
const MAX_REQUEST_BYTES: u64 = 64 << 10;
/// A replay of many dead letters can take a while; the client waits this long.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a drain waits for the service to apply the configuration its client sees.
const CONFIG_WAIT: Duration = Duration::from_secs(5);

/// What a command asks of the running service.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// `raxe dlq list|replay|purge`.
    Dlq { command: DlqCommand },
    /// `raxe ... siem remove --drop-queue`: the configuration file is already gone.
    DropQueue { destination: String },
    /// `raxe drain`: deliver every queue (partial batches too) within the time given. The
    /// output is `{"drained": bool, "stats": ...}`.
    Drain {
        timeout_ms: u64,
        /// The configuration the client sees (`ConfigStore::fingerprint`): the service
        /// applies it first, so a drain right after `enable` or `configure` drains with it.
        #[serde(default)]
        config: Option<u64>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Response {
    /// What the command prints, on success.
    output: String,
    /// Why it failed, otherwise.
    error: Option<String>,
}

/// The engine the service runs now; `None` while it reopens its store after a failure.
pub type HostSlot = Arc<RwLock<Option<Arc<Host>>>>;

pub fn current(slot: &HostSlot) -> Option<Arc<Host>> {
    slot.read().unwrap_or_else(|e| e.into_inner()).clone()
}

pub fn replace(slot: &HostSlot, host: Option<Arc<Host>>) {
    *slot.write().unwrap_or_else(|e| e.into_inner()) = host;
}

/// The listening socket; removed from the data directory when dropped.
pub struct ControlServer {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl ControlServer {
    /// Binds the socket (replacing a stale one: the caller holds the data directory's lock,
    /// so no other service can be listening on it) and answers requests until dropped.
    pub fn start(data: &DataDir, slot: HostSlot) -> Result<ControlServer> {
        let path = data.control_socket();
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .with_context(|| format!("cannot listen on {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {}", path.display()))?;
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        tokio::spawn(answer(stream, slot.clone()));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "control socket: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok(ControlServer { path, task })
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn answer(stream: tokio::net::UnixStream, slot: HostSlot) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(read.take(MAX_REQUEST_BYTES));
    let response = match reader.read_line(&mut line).await {
        Err(e) => failure(format!("cannot read the request: {e}")),
        Ok(_) => match serde_json::from_str::<Request>(line.trim()) {
            Err(e) => failure(format!("malformed request: {e}")),
            Ok(request) => run(request, slot).await,
        },
    };
    let mut bytes = serde_json::to_vec(&response).unwrap_or_default();
    bytes.push(b'\n');
    let _ = write.write_all(&bytes).await;
    let _ = write.shutdown().await;
}

async fn run(request: Request, slot: HostSlot) -> Response {
    let Some(host) = current(&slot) else {
        return failure(
            "the service is reopening its queues after a storage failure (see its log); try again shortly"
                .into(),
        );
    };
    tracing::info!(?request, "control request");
    if let Request::Drain { timeout_ms, config } = request {
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        // The service applies a changed configuration at its next poll (another change
        // meanwhile, or a reload that failed, would never match: not past CONFIG_WAIT).
        let config_by = deadline.min(Instant::now() + CONFIG_WAIT);
        if let Some(wanted) = config {
            host.config_applied(wanted, config_by).await;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let drained = host.dispatcher.drain(left).await;
        let answer = serde_json::json!({"drained": drained, "stats": host.dispatcher.stats()});
        return Response {
            output: answer.to_string(),
            error: None,
        };
    }
    match raxe_engine::storage_pool::spawn(move || execute(&host, request)).await {
        Ok(Ok(output)) => Response {
            output,
            error: None,
        },
        Ok(Err(e)) => failure(format!("{e:#}")),
        Err(e) => failure(format!("the request failed inside the service: {e}")),
    }
}

fn failure(error: String) -> Response {
    Response {
        output: String::new(),
        error: Some(error),
    }
}

fn execute(host: &Host, request: Request) -> Result<String> {
    match request {
        Request::Dlq { command } => {
            let mut out = Vec::new();
            crate::commands::ops::dlq_on(host, &command, &mut out)?;
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
        Request::DropQueue { destination } => {
            drop_queue(host, &destination)?;
            Ok(String::new())
        }
        Request::Drain { .. } => bail!("drain is answered by run()"),
    }
}

/// Stops the destination if the service still runs it, then deletes its queue and dead
/// letters.
pub fn drop_queue(host: &Host, destination: &str) -> Result<()> {
    match host
        .dispatcher
        .remove_destination(destination, RemovePolicy::Drop)
    {
        Ok(()) => Ok(()),
        Err(EngineError::UnknownDestination(_)) => {
            host.store
                .drop_queue(&queue_names::destination(destination))?;
            host.store
                .drop_queue(&queue_names::dead_letters(destination))?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Sends `request` to the service running on `data` and returns what it printed.
pub fn call(data: &DataDir, request: &Request) -> Result<String> {
    let path = data.control_socket();
    let mut stream = UnixStream::connect(&path).with_context(|| {
        if crate::status::drain_holds(data) {
            // A drain holds the queues and has no control socket.
            "a `raxe drain` holds the data directory; try again once it ends".to_string()
        } else {
            format!(
                "another raxe process holds the data directory (`raxe serve` answers on {}; \
                 it does not)",
                path.display()
            )
        }
    })?;
    let wait = match request {
        Request::Drain { timeout_ms, .. } => Duration::from_millis(*timeout_ms) + CLIENT_TIMEOUT,
        _ => CLIENT_TIMEOUT,
    };
    stream.set_read_timeout(Some(wait))?;
    let mut bytes = serde_json::to_vec(request)?;
    bytes.push(b'\n');
    stream.write_all(&bytes)?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .context("no answer from raxe serve")?;
    let response: Response = serde_json::from_str(line.trim())
        .with_context(|| format!("unexpected answer from raxe serve: {line:?}"))?;
    match response.error {
        Some(error) => bail!("raxe serve: {error}"),
        None => Ok(response.output),
    }
}
