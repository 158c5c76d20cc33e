//! `raxe drain`: with no service running, this process takes in the spool and delivers
//! (publishing its figures as the service does); with one, it asks the service.

use std::io::{self, IsTerminal};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;

use super::siem::describe_state;
use super::{describe_queue, live_stats};
use crate::control;
use crate::data_dir::DataDir;
use crate::host::{Host, OpenError};

/// Delivers everything queued; exit 0 when every queue is empty.
pub async fn drain(data: &DataDir, timeout: Duration) -> Result<i32> {
    match Host::open_to_deliver(data.clone()) {
        Ok(host) => drain_here(&host, data, timeout).await,
        Err(OpenError::InUse(_)) => drain_via_service(data, timeout).await,
        Err(OpenError::Other(e)) => Err(e),
    }
}

/// `drain` with no service running: this process takes in the spool, delivers, and
/// publishes its figures meanwhile, as the service would. Files that arrive meanwhile
/// (`raxe ingest` hands them to the spool) are taken in too, while time is left.
async fn drain_here(host: &Host, data: &DataDir, timeout: Duration) -> Result<i32> {
    let deadline = Instant::now() + timeout;
    let spool = crate::status::spool_dir(data);
    let publisher = Publisher::start(data, host, &spool);
    host.dispatcher.start()?;
    let progress = tokio::spawn(progress_bar(host.dispatcher.clone()));
    let intake = match spool.is_dir() {
        true => Some(Arc::new(crate::spool::Spool::open(spool.clone())?)),
        false => None,
    };
    // Files still waiting after a round that took them in are files it could not read.
    let mut left_last_round = None;
    let (drained, left) = loop {
        if let Some(intake) = &intake {
            let (intake, dispatcher, store) =
                (intake.clone(), host.dispatcher.clone(), host.store.clone());
            raxe_engine::storage_pool::spawn(move || intake.ingest_pending(&dispatcher, &store))
                .await?;
        }
        let drained = host
            .dispatcher
            .drain(deadline.saturating_duration_since(Instant::now()))
            .await;
        let left = match intake {
            Some(_) => spool_backlog(&spool)?,
            None => 0,
        };
        let stuck = left_last_round == Some(left);
        if !drained || left == 0 || stuck || Instant::now() >= deadline {
            break (drained, left);
        }
        left_last_round = Some(left);
    };
    progress.abort();
    // Drained, nothing waits for an indexer ack; timed out, `--timeout` is spent.
    host.dispatcher
        .shutdown_releasing_acks(Duration::from_secs(10))
        .await;
    // What this run found (a bad token, say) stays for `stats` and `show`.
    let stats = publisher.stop().await;
    if left > 0 {
        println!(
            "{left} spool file(s) in {} not taken in (arrived at the end, or could not be read: see the log)",
            spool.display()
        );
    }
    finish_drain(&serde_json::to_value(&stats)?, drained && left == 0)
}

/// Publishes a drain's figures every 0.5 s, as the service does, and once more, final,
/// when stopped. Dropped without `stop` (an error), it stops publishing.
struct Publisher {
    task: tokio::task::JoinHandle<()>,
    data: DataDir,
    dispatcher: Arc<raxe_engine::SiemDispatcher>,
    spool: std::path::PathBuf,
}

impl Publisher {
    fn start(data: &DataDir, host: &Host, spool: &Path) -> Publisher {
        let (data, dispatcher, spool) =
            (data.clone(), host.dispatcher.clone(), spool.to_path_buf());
        let task = tokio::spawn({
            let (data, dispatcher, spool) = (data.clone(), dispatcher.clone(), spool.clone());
            async move {
                let role = crate::status::Role::Drain;
                loop {
                    crate::status::write(&data, &dispatcher.stats(), role, true, &spool);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        });
        Publisher {
            task,
            data,
            dispatcher,
            spool,
        }
    }

    /// The final figures, published as those of a run that ended; after the last
    /// periodic write has finished, so it cannot land over them.
    async fn stop(mut self) -> raxe_engine::EngineStats {
        self.task.abort();
        let _ = (&mut self.task).await;
        let stats = self.dispatcher.stats();
        crate::status::write(
            &self.data,
            &stats,
            crate::status::Role::Drain,
            false,
            &self.spool,
        );
        stats
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The service owns the queues. Events still in spool files are not queued yet: wait
/// until its spool is empty, then have it drain (its published figures can be up to half a
/// second old, and would call a queue empty before the spool's events reach it).
async fn drain_via_service(data: &DataDir, timeout: Duration) -> Result<i32> {
    let deadline = Instant::now() + timeout;
    let spool = crate::status::spool_dir(data);
    loop {
        let waiting = spool_backlog(&spool)?;
        if waiting == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            let request = control::Request::Drain {
                timeout_ms: left.as_millis() as u64,
                config: Some(
                    crate::config_store::ConfigStore::new(data.config_dir()).fingerprint(),
                ),
            };
            let target = data.clone();
            let answer =
                tokio::task::spawn_blocking(move || control::call(&target, &request)).await??;
            let answer: Value = serde_json::from_str(&answer)
                .with_context(|| format!("unexpected drain answer from raxe serve: {answer}"))?;
            let drained = answer["drained"].as_bool().unwrap_or(false);
            // Spool files that arrived meanwhile are not delivered yet: go round again.
            let arrived = spool_backlog(&spool)? > 0;
            if !drained || !arrived || Instant::now() >= deadline {
                wait_for_figures_after(data, raxe_engine::audit::now_ms()).await;
                return finish_drain(&answer["stats"], drained && !arrived);
            }
        } else if Instant::now() >= deadline {
            println!(
                "{waiting} spool file(s) in {} not ingested yet",
                spool.display()
            );
            let (stats, _) = live_stats(data)?;
            return finish_drain(&stats, false);
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Waits (a second at most) until the service has published figures newer than `ms`, so
/// `stats` and `show` right after the drain say what it did, not the state before it (the
/// service publishes every half second).
async fn wait_for_figures_after(data: &DataDir, ms: u64) {
    let give_up = Instant::now() + Duration::from_secs(1);
    while Instant::now() < give_up {
        let published = crate::status::read(data).is_ok_and(|p| p.updated_ms > ms);
        if published {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Spool files not ingested yet: complete ones waiting, and ones being read. The spool
/// is listed before `ingesting/`: a file only moves from the first to the second, and
/// leaves the second once its events are queued, so no file slips between the listings.
fn spool_backlog(spool: &Path) -> Result<usize> {
    let waiting = crate::spool::pending_files(spool)?.len();
    let claimed = spool.join(crate::spool::INGESTING_DIR);
    let claimed = if claimed.exists() {
        crate::spool::pending_files(&claimed)?.len()
    } else {
        0
    };
    Ok(waiting + claimed)
}

async fn progress_bar(dispatcher: std::sync::Arc<raxe_engine::SiemDispatcher>) {
    if !io::stderr().is_terminal() {
        return;
    }
    let total = dispatcher.queued().max(1);
    loop {
        let left = dispatcher.queued();
        let done = total.saturating_sub(left);
        let width = 30;
        let filled = (done * width / total) as usize;
        eprint!(
            "\r[{}{}] {done}/{total} delivered",
            "#".repeat(filled),
            " ".repeat(width as usize - filled)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn finish_drain(stats: &Value, drained: bool) -> Result<i32> {
    if io::stderr().is_terminal() {
        eprintln!();
    }
    let unrouted = stats["unrouted"]["events"].as_u64().unwrap_or(0);
    let kept = stats["kept_queues"].as_array().cloned().unwrap_or_default();
    if drained {
        if unrouted == 0 && kept.is_empty() {
            println!("✓ every queue is empty");
        } else {
            println!("✓ every destination's queue is empty");
            if unrouted > 0 {
                println!("⚠ {unrouted} events have no destination yet (unrouted): they are delivered once their customer's SIEM is configured");
            }
            print_kept_queues(&kept);
        }
        return Ok(0);
    }
    println!("✗ not drained; per destination:");
    if unrouted > 0 {
        println!(
            "  {:<36} {unrouted} events — their customer has no SIEM configured yet",
            "(unrouted)"
        );
    }
    for dest in stats["destinations"].as_array().into_iter().flatten() {
        if dest["queue"]["events"].as_u64().unwrap_or(0) > 0 {
            println!(
                "  {:<36} {} — {}",
                dest["id"].as_str().unwrap_or("?"),
                describe_queue(&dest["queue"]),
                describe_state(&dest["state"])
            );
        }
    }
    print_kept_queues(&kept);
    Ok(1)
}

/// Queues kept for removed destinations: nothing delivers their events until then.
pub(super) fn print_kept_queues(kept: &[Value]) {
    for queue in kept {
        println!(
            "⚠ {} wait in the kept queue of {}, which is not configured: configure it again to deliver them, or remove it with --drop-queue",
            describe_queue(&queue["queue"]),
            queue["id"].as_str().unwrap_or("?"),
        );
    }
}
