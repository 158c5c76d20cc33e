//! `raxe serve`: the long-running service.
//!
//! Every poll interval it ingests complete spool files, reloads destinations when their
//! configuration files changed, and publishes live figures to `status.json` for the other
//! commands; its control socket (`control.rs`) serves the commands that need the queues.
//! SIGHUP reloads at once. SIGTERM/SIGINT stop intake, give in-flight requests
//! `--shutdown-timeout` seconds, and leave everything undelivered queued for the next start.
//!
//! A failed disk sync (a full disk, say) makes the store refuse every write until it is
//! reopened (see `raxe_storage`). The service then stops its engine, leaves the spool files
//! where they are, waits until a probe write succeeds, and reopens the store in-process:
//! nothing is lost (refused spool files are still in the spool, queued events are on disk)
//! and no restart is needed.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use raxe_engine::{EngineError, RemovePolicy};
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::args::ServeArgs;
use crate::control::{self, ControlServer, HostSlot};
use crate::data_dir::DataDir;
use crate::host::{Host, OpenError};
use crate::metrics_server::MetricsServer;
use crate::spool;
use crate::status;

/// Bytes written and synced to tell whether the disk takes writes again.
const PROBE_BYTES: usize = 4 << 20;
/// Longest wait between two reopen attempts after a storage failure.
const MAX_REOPEN_DELAY: Duration = Duration::from_secs(5);

struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn install() -> Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Resolves on SIGTERM or SIGINT.
    async fn stop(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

pub async fn serve(data: DataDir, args: ServeArgs) -> Result<()> {
    if let Some(threads) = args.storage_threads {
        // Nothing has used the pool yet, so this cannot fail.
        let _ = raxe_engine::storage_pool::set_limit(usize::from(threads));
    }
    let mut host = match Host::open_to_deliver(data.clone()) {
        Ok(host) => Arc::new(host),
        Err(OpenError::InUse(msg)) => bail!("{msg}; is `raxe serve` already running?"),
        Err(OpenError::Other(e)) => return Err(e),
    };
    let spool = Arc::new(spool::Spool::open(
        args.spool.clone().unwrap_or_else(|| data.spool_dir()),
    )?);
    sweep_spool_markers(&host, &spool);
    host.dispatcher.start()?;
    let slot: HostSlot = Arc::new(RwLock::new(Some(host.clone())));
    let _control = match ControlServer::start(&data, slot.clone()) {
        Ok(server) => Some(server),
        Err(e) => {
            // Everything but `dlq` and `remove --drop-queue` still works without it.
            tracing::warn!(error = %format!("{e:#}"), "no control socket: dlq and remove --drop-queue need the service stopped");
            None
        }
    };
    let _metrics = match args.metrics_addr {
        Some(addr) => {
            let server = MetricsServer::start(addr, slot.clone()).await?;
            tracing::info!(addr = %server.addr, "metrics at /metrics, health at /health");
            Some(server)
        }
        None => None,
    };
    // At once, so that `raxe ingest` and `raxe drain` find this run's spool.
    status::write(
        &host.data,
        &host.dispatcher.stats(),
        status::Role::Serve,
        true,
        spool.dir(),
    );
    let mut registered = registered_ids(&host);
    tracing::info!(
        data_dir = %data.root().display(),
        spool = %spool.dir().display(),
        destinations = registered.len(),
        "raxe serve started"
    );
    let mut signals = Signals::install()?;
    let mut tick = tokio::time::interval(Duration::from_millis(args.poll_interval_ms.max(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut fingerprint = host.configs.fingerprint();
    let mut last_status = Instant::now() - Duration::from_secs(60);
    loop {
        tokio::select! {
            _ = signals.term.recv() => break,
            _ = signals.int.recv() => break,
            _ = signals.hup.recv() => {
                tracing::info!("SIGHUP: reloading destinations");
                fingerprint = host.configs.fingerprint();
                reload(&host, &mut registered);
            }
            _ = tick.tick() => {
                let now = host.configs.fingerprint();
                if now != fingerprint {
                    fingerprint = now;
                    tracing::info!("configuration changed: reloading destinations");
                    reload(&host, &mut registered);
                }
                let (intake, intake_spool) = (host.clone(), spool.clone());
                let _ = raxe_engine::storage_pool::spawn(move || {
                    intake_spool.ingest_pending(&intake.dispatcher, &intake.store)
                })
                .await;
                if let Err(failure) = host.store.health() {
                    control::replace(&slot, None);
                    match reopen(host, &data, failure.to_string(), &mut signals).await {
                        Some(fresh) => {
                            host = fresh;
                            sweep_spool_markers(&host, &spool);
                            control::replace(&slot, Some(host.clone()));
                            registered = registered_ids(&host);
                            fingerprint = host.configs.fingerprint();
                            continue;
                        }
                        None => {
                            tracing::info!("stopped while the store was closed; queued events stay on disk");
                            return Ok(());
                        }
                    }
                }
                if last_status.elapsed() >= Duration::from_millis(500) {
                    status::write(&host.data, &host.dispatcher.stats(), status::Role::Serve, true, spool.dir());
                    last_status = Instant::now();
                }
            }
        }
    }
    control::replace(&slot, None);
    tracing::info!("stopping: finishing in-flight deliveries");
    host.dispatcher
        .shutdown(Duration::from_secs(args.shutdown_timeout))
        .await;
    status::write(
        &host.data,
        &host.dispatcher.stats(),
        status::Role::Serve,
        false,
        spool.dir(),
    );
    tracing::info!("stopped; undelivered events stay queued");
    Ok(())
}

fn registered_ids(host: &Host) -> BTreeSet<String> {
    host.dispatcher
        .stats()
        .destinations
        .into_iter()
        .map(|d| d.id)
        .collect()
}

fn reload(host: &Host, registered: &mut BTreeSet<String>) {
    let (mut current, unreadable): (BTreeSet<String>, Vec<String>) = match host.apply_configs() {
        Ok((ids, unreadable)) => (ids.into_iter().collect(), unreadable),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "cannot read the destination configuration; keeping the current one");
            return;
        }
    };
    // A file caught half-written, or edited wrong, is not a removal: removed, the
    // destination would miss its customer's events until the file is fixed.
    for id in unreadable {
        if registered.contains(&id) {
            tracing::warn!(destination = %id, "its configuration file cannot be used; it keeps running with the last good one until the file is fixed");
            current.insert(id);
        }
    }
    for gone in registered.difference(&current) {
        // The queue stays on disk: configuring the destination again resumes it.
        match host.dispatcher.remove_destination(gone, RemovePolicy::Keep) {
            Ok(()) => tracing::info!(destination = %gone, "destination removed; its queue is kept"),
            // `remove --drop-queue` already stopped it through the control socket.
            Err(EngineError::UnknownDestination(_)) => {}
            Err(e) => tracing::warn!(destination = %gone, error = %e, "cannot remove destination"),
        }
    }
    *registered = current;
}

/// Closes the failed store and opens it again once the disk takes writes; `None` when a
/// stop signal came first.
async fn reopen(
    host: Arc<Host>,
    data: &DataDir,
    failure: String,
    signals: &mut Signals,
) -> Option<Arc<Host>> {
    tracing::error!(
        error = %failure,
        "storage failure: intake and delivery are paused, spool files stay in the spool; \
         the queues are reopened as soon as the disk takes writes again (free some space)"
    );
    // The store takes no acks: requests waiting for an indexer ack are not waited for.
    host.dispatcher
        .shutdown_releasing_acks(Duration::from_secs(2))
        .await;
    let closed = host.store.closed_signal();
    drop(host);
    // sled's files and the directory lock go only with the last queue handle.
    while !closed.is_closed() {
        tokio::select! {
            _ = signals.stop() => return None,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    let mut delay = Duration::from_secs(1);
    loop {
        let probe_dir = data.queues_dir();
        let attempt = raxe_engine::storage_pool::spawn({
            let data = data.clone();
            move || {
                probe_write(&probe_dir)?;
                Host::open_to_deliver(data).map_err(|e| match e {
                    OpenError::InUse(msg) => anyhow::anyhow!(msg),
                    OpenError::Other(e) => e,
                })
            }
        })
        .await;
        match attempt {
            Ok(Ok(host)) => {
                let host = Arc::new(host);
                match host.dispatcher.start() {
                    Ok(()) => {
                        tracing::info!("storage is writable again: queues reopened, intake and delivery resumed");
                        return Some(host);
                    }
                    Err(e) => tracing::error!(error = %e, "cannot restart delivery"),
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %format!("{e:#}"), retry_in = ?delay, "storage still not writable")
            }
            Err(e) => tracing::error!(error = %e, "reopen task failed"),
        }
        tokio::select! {
            _ = signals.stop() => return None,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(MAX_REOPEN_DELAY);
    }
}

/// Writes and syncs a few MB beside the queues, then deletes them: proof that appends can
/// be made durable again.
fn probe_write(dir: &Path) -> Result<()> {
    let path: PathBuf = dir.join(".raxe-space-probe");
    let result = (|| {
        let mut file = std::fs::File::create(&path)?;
        let block = vec![0u8; 64 << 10];
        for _ in 0..PROBE_BYTES / block.len() {
            file.write_all(&block)?;
        }
        file.sync_data()
    })();
    let _ = std::fs::remove_file(&path);
    result.with_context(|| {
        format!(
            "probe write of {} MB in {}",
            PROBE_BYTES >> 20,
            dir.display()
        )
    })
}

/// See [`spool::sweep_markers`]; a failure only leaves stale markers for the next start.
fn sweep_spool_markers(host: &Host, spool: &spool::Spool) {
    match spool::sweep_markers(&host.store, spool.dir()) {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            markers = n,
            "removed progress markers of spool files that are gone"
        ),
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot sweep spool progress markers"),
    }
}
