//! Opening the engine on a data directory: the sled store (exclusive), the audit log, and
//! a dispatcher with every configured destination registered.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use raxe_engine::{AuditLog, DestinationOptions, EngineError, SiemDispatcher};
use raxe_storage::{QueueError, QueueStore, SledStore, StoreOptions};
use tokio::sync::watch;

use crate::config_store::{ConfigStore, DestinationRecord};
use crate::data_dir::DataDir;

/// The engine, owned by this process.
pub struct Host {
    pub data: DataDir,
    pub store: Arc<SledStore>,
    pub dispatcher: Arc<SiemDispatcher>,
    pub configs: ConfigStore,
    /// Whether this process delivers (`serve`, `drain`): only then is each configuration
    /// applied kept as the one its destination last ran with.
    delivers: bool,
    /// The fingerprint of the configuration last applied (see `ConfigStore::fingerprint`).
    applied_config: watch::Sender<u64>,
}

/// Why the engine could not be opened.
pub enum OpenError {
    /// A running `raxe serve` (or another command) holds the data directory.
    InUse(String),
    Other(anyhow::Error),
}

impl Host {
    /// Waits until the configuration with fingerprint `wanted` is applied, until `by` at
    /// most; false if it was not by then.
    pub async fn config_applied(&self, wanted: u64, by: Instant) -> bool {
        let mut applied = self.applied_config.subscribe();
        tokio::time::timeout_at(by.into(), applied.wait_for(|now| *now == wanted))
            .await
            .is_ok_and(|seen| seen.is_ok())
    }

    /// Opens the store and registers every configured destination (not started), for a
    /// command that does not deliver.
    pub fn open(data: DataDir) -> Result<Host, OpenError> {
        Self::open_as(data, false)
    }

    /// As [`Host::open`], for `serve` and `drain`, which deliver: the configurations they
    /// run with are kept (see [`ConfigStore::keep_as_last_good`]).
    pub fn open_to_deliver(data: DataDir) -> Result<Host, OpenError> {
        Self::open_as(data, true)
    }

    fn open_as(data: DataDir, delivers: bool) -> Result<Host, OpenError> {
        // sled's cache is sized once, here: for the destinations configured now (one added
        // later shares it until the next start).
        let configs = ConfigStore::new(data.config_dir());
        let destinations = configs.count();
        let cache = StoreOptions::cache_for_queues(destinations);
        let opts = StoreOptions {
            cache_capacity: cache,
            ..StoreOptions::default()
        };
        let store = match SledStore::open_with(data.queues_dir(), opts) {
            Ok(store) => Arc::new(store),
            Err(e @ QueueError::InUse { .. }) => return Err(OpenError::InUse(e.to_string())),
            Err(e) => {
                return Err(OpenError::Other(
                    anyhow::Error::new(e).context("cannot open the event queues"),
                ))
            }
        };
        // sled's page cache, in MiB.
        let cache_mib = (cache as f64 / f64::from(1 << 20) * 10.0).round() / 10.0;
        if delivers {
            tracing::info!(destinations, cache_mib, "event queues open");
        } else {
            tracing::debug!(destinations, cache_mib, "event queues open");
        }
        let host = (|| {
            let audit = AuditLog::open(
                &data.audit_dir(),
                raxe_engine::audit::DEFAULT_MAX_FILE_BYTES,
            )
            .with_context(|| {
                format!(
                    "cannot open the audit log in {}",
                    data.audit_dir().display()
                )
            })?;
            let dyn_store: Arc<dyn QueueStore> = store.clone();
            let dispatcher = Arc::new(SiemDispatcher::new(dyn_store, Arc::new(audit))?);
            let host = Host {
                data,
                store,
                dispatcher,
                configs,
                delivers,
                applied_config: watch::Sender::new(0),
            };
            host.apply_configs()?;
            if delivers {
                host.restore_last_deliveries();
            }
            Ok::<_, anyhow::Error>(host)
        })();
        host.map_err(OpenError::Other)
    }

    /// When each destination last delivered, as the last run (the service, or a drain)
    /// published it: "never" after a restart would be wrong. Not for a destination
    /// configured since (another SIEM, perhaps).
    fn restore_last_deliveries(&self) {
        let Ok(last) = crate::status::read(&self.data) else {
            return;
        };
        let published_ms = last.updated_ms;
        for dest in last.stats["destinations"].as_array().into_iter().flatten() {
            let (Some(id), Some(ms)) = (
                dest["id"].as_str(),
                dest["marks"]["last_delivery_ms"].as_u64(),
            ) else {
                continue;
            };
            let unchanged = crate::config_store::Scope::from_destination_id(id)
                .and_then(|scope| self.configs.changed_ms(&scope))
                .is_some_and(|changed| changed < published_ms);
            if unchanged {
                let _ = self.dispatcher.restore_last_delivery(id, ms);
            }
        }
    }

    /// Registers every configured destination (a changed one gets its new adapter; a
    /// stopped one resumes); in a process that delivers, keeps each configuration as the
    /// one it last ran with, and forgets those of destinations whose file is gone. A file
    /// that cannot be used is logged; a destination not running yet starts with the
    /// configuration it last ran with, if one is kept. Returns the ids registered, and
    /// those of the other files that cannot be used (a destination already running keeps
    /// its configuration: see the service's reload).
    pub fn apply_configs(&self) -> Result<(Vec<String>, Vec<String>)> {
        // Read before the files: a change made while they are read shows as not applied.
        let fingerprint = self.configs.fingerprint();
        let (mut records, problems) = self.configs.list()?;
        if self.delivers {
            // A destination whose file is gone (deleted by hand, say) is gone for good: its
            // kept configuration, token and all, goes too.
            let files: HashSet<String> = records
                .iter()
                .map(|r| r.id())
                .chain(problems.iter().filter_map(|p| p.id.clone()))
                .collect();
            self.configs.forget_last_good_except(&files);
        }
        let mut unreadable = Vec::new();
        let mut last_good = Vec::new();
        for problem in problems {
            tracing::error!(%problem, "cannot use a destination configuration file");
            let Some(id) = problem.id else { continue };
            // Not running yet (a start): it runs as it last did, if that is known.
            let running = self.dispatcher.state(&id).is_ok();
            match self.configs.last_good(&id).filter(|_| !running) {
                Some(record) => {
                    tracing::warn!(destination = %id, "using the configuration it last ran with until its file is fixed");
                    last_good.push(id);
                    records.push(record);
                }
                None => unreadable.push(id),
            }
        }
        let mut ids = Vec::new();
        for record in records {
            match register(&self.dispatcher, &record) {
                Ok(()) => {
                    if self.delivers && !last_good.contains(&record.id()) {
                        if let Err(e) = self.configs.keep_as_last_good(&record) {
                            tracing::warn!(destination = %record.id(), error = %format!("{e:#}"), "cannot keep the configuration it runs with");
                        }
                    }
                    ids.push(record.id());
                }
                // All queues share one data file: one that is damaged makes all suspect.
                Err(e) if damaged_store(&e) => return Err(e),
                Err(e) => {
                    tracing::error!(destination = %record.id(), error = %format!("{e:#}"), "cannot start destination")
                }
            }
        }
        self.applied_config.send_replace(fingerprint);
        Ok((ids, unreadable))
    }
}

/// Builds the adapter for a record and registers it with the dispatcher.
pub fn register(dispatcher: &SiemDispatcher, record: &DestinationRecord) -> Result<()> {
    // What building the adapter logs (TLS verification off, say) names its destination.
    let _destination = tracing::info_span!("destination", id = %record.id()).entered();
    let adapter = raxe_adapters::create_siem_adapter(record.config.clone())
        .with_context(|| format!("destination {}", record.id()))?;
    dispatcher.register_destination(
        &record.id(),
        adapter.into(),
        record.scope.customer_key(),
        DestinationOptions {
            max_in_flight: record.max_in_flight.max(1),
            ..DestinationOptions::default()
        },
    )?;
    Ok(())
}

impl From<anyhow::Error> for OpenError {
    fn from(e: anyhow::Error) -> Self {
        OpenError::Other(e)
    }
}

/// Whether `e` says the queue data file is damaged (as opposed to one bad configuration).
fn damaged_store(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<EngineError>(),
            Some(EngineError::Queue(QueueError::Corrupt { .. }))
        ) || matches!(
            cause.downcast_ref::<QueueError>(),
            Some(QueueError::Corrupt { .. })
        )
    })
}
