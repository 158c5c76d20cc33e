//! `raxe serve`: the long-running service.
//!
//! Every poll interval it ingests complete spool files, reloads destinations when their
//! configuration files changed, and publishes live figures to `status.json` for the other
//! commands. SIGHUP reloads at once. SIGTERM/SIGINT stop intake, give in-flight requests
//! `--shutdown-timeout` seconds, and leave everything undelivered queued for the next start.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use raxe_engine::RemovePolicy;
use tokio::signal::unix::{signal, SignalKind};

use crate::args::ServeArgs;
use crate::data_dir::{create_private_dir, DataDir};
use crate::host::{Host, OpenError};
use crate::spool;
use crate::status;

pub async fn serve(data: DataDir, args: ServeArgs) -> Result<()> {
    let host = match Host::open(data) {
        Ok(host) => Arc::new(host),
        Err(OpenError::InUse(msg)) => bail!("{msg}; is `raxe serve` already running?"),
        Err(OpenError::Other(e)) => return Err(e),
    };
    let spool_dir = args.spool.clone().unwrap_or_else(|| host.data.spool_dir());
    let rejected_dir = spool_dir.join("rejected");
    create_private_dir(&rejected_dir)
        .with_context(|| format!("cannot create {}", rejected_dir.display()))?;
    host.dispatcher.start()?;
    let mut registered: BTreeSet<String> = host
        .dispatcher
        .stats()
        .destinations
        .into_iter()
        .map(|d| d.id)
        .collect();
    tracing::info!(
        data_dir = %host.data.root().display(),
        spool = %spool_dir.display(),
        destinations = registered.len(),
        "raxe serve started"
    );
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut tick = tokio::time::interval(Duration::from_millis(args.poll_interval_ms.max(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut fingerprint = host.configs.fingerprint();
    let mut last_status = Instant::now() - Duration::from_secs(60);
    loop {
        tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = sighup.recv() => {
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
                let intake = host.clone();
                let (dir, rejected) = (spool_dir.clone(), rejected_dir.clone());
                let _ = tokio::task::spawn_blocking(move || ingest_spool(&intake, &dir, &rejected)).await;
                if last_status.elapsed() >= Duration::from_millis(500) {
                    status::write(&host.data, &host.dispatcher.stats(), true);
                    last_status = Instant::now();
                }
            }
        }
    }
    tracing::info!("stopping: finishing in-flight deliveries");
    host.dispatcher
        .shutdown(Duration::from_secs(args.shutdown_timeout))
        .await;
    status::write(&host.data, &host.dispatcher.stats(), false);
    tracing::info!("stopped; undelivered events stay queued");
    Ok(())
}

fn reload(host: &Host, registered: &mut BTreeSet<String>) {
    let current: BTreeSet<String> = match host.apply_configs() {
        Ok(ids) => ids.into_iter().collect(),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "cannot read the destination configuration; keeping the current one");
            return;
        }
    };
    for gone in registered.difference(&current) {
        // The queue stays on disk: configuring the destination again resumes it.
        if let Err(e) = host.dispatcher.remove_destination(gone, RemovePolicy::Keep) {
            tracing::warn!(destination = %gone, error = %e, "cannot remove destination");
        } else {
            tracing::info!(destination = %gone, "destination removed; its queue is kept");
        }
    }
    *registered = current;
}

/// Ingests every complete spool file. A file that fails stays in the spool and is retried
/// on the next poll (a full queue, say): nothing is lost.
fn ingest_spool(host: &Host, spool_dir: &Path, rejected_dir: &Path) {
    let files = match spool::pending_files(spool_dir) {
        Ok(files) => files,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "cannot read the spool");
            return;
        }
    };
    for file in files {
        match spool::ingest_file(&file, &host.dispatcher, &host.store, rejected_dir) {
            Ok(report) => tracing::info!(
                file = %file.display(),
                accepted = report.accepted,
                rejected = report.rejected,
                unrouted = report.unrouted,
                "spool file ingested"
            ),
            Err(e) => {
                tracing::error!(file = %file.display(), error = %format!("{e:#}"), "spool file not ingested; will retry");
                return;
            }
        }
    }
}
