//! `SiemDispatcher`: the engine's front door (the API our users know from the SDK).
//!
//! Registering a destination opens its queues; `start` spawns its workers; `dispatch`
//! routes events and returns once they are durable in every destination's queue (one
//! group-committed append for a whole batch, across all queues).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use raxe_adapters::adapter::SiemAdapter;
use raxe_adapters::event::{EncodedEvent, ScanEvent};
use raxe_storage::{Queue, QueueError, QueueStore};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::audit::AuditLog;
use crate::backoff::BackoffPolicy;
use crate::destination::{Destination, DestinationOptions, DestinationState};
use crate::error::EngineError;
use crate::indexer_ack::AckTracker;
use crate::queue_names;
use crate::routing::{CustomerKey, DestinationId, RouteTable};
use crate::stats::{DestinationReport, EngineStats, KeptQueue};
use crate::worker::Worker;

mod reroute;
mod stopping;

/// What `dispatch_batch` did with a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DispatchReport {
    /// Events made durable (routed or unrouted).
    pub accepted: usize,
    /// Of those, events with no destination: kept in the unrouted queue.
    pub unrouted: usize,
    /// Event copies queued across destinations.
    pub queued: usize,
}

/// What to do with a removed destination's undelivered events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovePolicy {
    /// Delete the queue and its dead letters.
    Drop,
    /// Keep the queues on disk: registering the same id again resumes delivery.
    Keep,
}

/// Routes events to destinations and runs their delivery workers.
pub struct SiemDispatcher {
    store: Arc<dyn QueueStore>,
    audit: Arc<AuditLog>,
    policy: BackoffPolicy,
    routes: RwLock<RouteTable>,
    destinations: RwLock<BTreeMap<DestinationId, Arc<Destination>>>,
    unrouted: Arc<dyn Queue>,
    unrouted_warned: Mutex<HashSet<CustomerKey>>,
    /// Customers that may have events in the unrouted queue (`None`: not known yet, until
    /// a re-route scan has read it all). A registration scans the unrouted queue only when
    /// its customer is here (or, global, when any is). Changed under the routes lock.
    unrouted_customers: Mutex<Option<HashSet<CustomerKey>>>,
    unrouted_total: AtomicU64,
    flush_now: Arc<AtomicBool>,
    shutdown: watch::Sender<bool>,
    /// Set by `shutdown` before `shutdown` turns true: until when ack pollers may wait for
    /// the indexer to confirm what it has (see `indexer_ack::poller::settle`).
    settle_by: watch::Sender<Option<Instant>>,
    running: Mutex<Option<Running>>,
    /// The task counts of removed destinations whose tasks may still run, by id: a
    /// destination added again under that id waits for them (see `Destination::predecessor`).
    removed_lanes: Mutex<HashMap<DestinationId, watch::Receiver<usize>>>,
}

struct Running {
    handle: tokio::runtime::Handle,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Spawns one of `dest`'s tasks, counted in its lanes while it runs.
    fn spawn_lane(
        &mut self,
        dest: &Arc<Destination>,
        task: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let lane = dest.lane();
        self.tasks.push(self.handle.spawn(async move {
            let _lane = lane;
            task.await
        }));
    }
}

impl SiemDispatcher {
    pub fn new(store: Arc<dyn QueueStore>, audit: Arc<AuditLog>) -> Result<Self, EngineError> {
        Self::with_policy(store, audit, BackoffPolicy::default())
    }

    pub fn with_policy(
        store: Arc<dyn QueueStore>,
        audit: Arc<AuditLog>,
        policy: BackoffPolicy,
    ) -> Result<Self, EngineError> {
        let unrouted = store.open_queue(queue_names::UNROUTED)?;
        Ok(SiemDispatcher {
            store,
            audit,
            policy,
            routes: RwLock::new(RouteTable::default()),
            destinations: RwLock::new(BTreeMap::new()),
            unrouted,
            unrouted_warned: Mutex::new(HashSet::new()),
            unrouted_customers: Mutex::new(None),
            unrouted_total: AtomicU64::new(0),
            flush_now: Arc::new(AtomicBool::new(false)),
            shutdown: watch::channel(false).0,
            settle_by: watch::channel(None).0,
            running: Mutex::new(None),
            removed_lanes: Mutex::new(HashMap::new()),
        })
    }

    /// Registers a destination under an id derived from its scope and configuration
    /// (stable across restarts) and returns that id. `None` = global: gets every event.
    pub fn register_adapter(
        &self,
        adapter: Box<dyn SiemAdapter>,
        customer: Option<CustomerKey>,
    ) -> Result<DestinationId, EngineError> {
        let id = derive_id(adapter.as_ref(), customer.as_ref())?;
        self.register_destination(&id, adapter.into(), customer, DestinationOptions::default())?;
        Ok(id)
    }

    /// Registers (or updates) a destination under a stable id. Updating replaces the
    /// adapter, which also resumes a destination stopped for bad credentials. Events held
    /// as unrouted that now match are moved to the destination's queue.
    pub fn register_destination(
        &self,
        id: &str,
        adapter: Arc<dyn SiemAdapter>,
        customer: Option<CustomerKey>,
        options: DestinationOptions,
    ) -> Result<(), EngineError> {
        queue_names::validate_id(id)?;
        let enabled = adapter.config().enabled;
        let mut routes = write(&self.routes);
        let existing = read(&self.destinations).get(id).cloned();
        match existing {
            Some(dest) if dest.customer == customer && dest.options == options => {
                dest.acks.set_cap(ack_window(adapter.as_ref()));
                dest.adapter.send_replace(adapter);
                dest.enabled.send_replace(enabled);
            }
            Some(dest) if dest.customer != customer => {
                // The queue holds the old scope's events: another customer's SIEM must not
                // get them. Remove the destination (and decide about its queue) first.
                return Err(EngineError::InvalidId {
                    id: id.to_string(),
                    why: "it is registered for another customer; remove it first",
                });
            }
            Some(dest) => {
                // Worker options are fixed: new ones get a new Destination over the same
                // queues, and the old workers are retired.
                let (queue, dead_letters) = (dest.queue.clone(), dest.dead_letters.clone());
                dest.enabled.send_replace(false);
                self.install(id, queue, dead_letters, adapter, customer.clone(), options);
            }
            None => {
                let queue = self.store.open_queue(&queue_names::destination(id))?;
                let dead_letters = self.store.open_queue(&queue_names::dead_letters(id))?;
                self.install(id, queue, dead_letters, adapter, customer.clone(), options);
            }
        }
        let waiting = match (lock(&self.unrouted_customers).as_ref(), &customer) {
            (None, _) => true,
            (Some(waiting), Some(key)) => waiting.contains(key),
            (Some(waiting), None) => !waiting.is_empty(),
        };
        routes.insert(id, customer);
        if waiting {
            self.reroute_unrouted(&routes)?;
        }
        Ok(())
    }

    fn install(
        &self,
        id: &str,
        queue: Arc<dyn Queue>,
        dead_letters: Arc<dyn Queue>,
        adapter: Arc<dyn SiemAdapter>,
        customer: Option<CustomerKey>,
        options: DestinationOptions,
    ) {
        let enabled = adapter.config().enabled;
        let acks = AckTracker::new(ack_window(adapter.as_ref()));
        let predecessor = match read(&self.destinations).get(id) {
            Some(old) => Some(old.lanes.subscribe()),
            None => lock(&self.removed_lanes).remove(id),
        };
        let dest = Arc::new(Destination {
            id: id.to_string(),
            customer,
            queue,
            dead_letters,
            store: self.store.clone(),
            adapter: watch::channel(adapter).0,
            enabled: watch::channel(enabled).0,
            options,
            wake: Notify::new(),
            state: Mutex::new(if enabled {
                DestinationState::Ok
            } else {
                DestinationState::Disabled
            }),
            marks: Mutex::default(),
            flush_now: self.flush_now.clone(),
            retired: AtomicBool::new(false),
            acks,
            lanes: watch::channel(0).0,
            predecessor,
        });
        if let Some(old) = write(&self.destinations).insert(id.to_string(), dest.clone()) {
            old.retire();
        }
        self.spawn_workers(&dest);
    }

    /// Enables or disables a destination. Disabled destinations keep queueing.
    pub fn set_enabled(&self, id: &str, enabled: bool) -> Result<(), EngineError> {
        let dest = self.destination(id)?;
        dest.enabled.send_replace(enabled);
        Ok(())
    }

    /// Removes a destination; `policy` says what happens to its queued events.
    pub fn remove_destination(&self, id: &str, policy: RemovePolicy) -> Result<(), EngineError> {
        let mut routes = write(&self.routes);
        let dest = write(&self.destinations)
            .remove(id)
            .ok_or_else(|| EngineError::UnknownDestination(id.to_string()))?;
        routes.remove(id);
        dest.retire();
        let mut removed = lock(&self.removed_lanes);
        removed.retain(|_, lanes| *lanes.borrow() > 0);
        removed.insert(id.to_string(), dest.lanes.subscribe());
        drop(removed);
        drop(dest);
        if policy == RemovePolicy::Drop {
            self.store.drop_queue(&queue_names::destination(id))?;
            self.store.drop_queue(&queue_names::dead_letters(id))?;
        }
        Ok(())
    }

    /// Starts every destination's workers on the current tokio runtime. Destinations
    /// registered later start at once.
    pub fn start(&self) -> Result<(), EngineError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| EngineError::NoRuntime)?;
        {
            let mut running = lock(&self.running);
            if running.is_some() {
                return Ok(());
            }
            *running = Some(Running {
                handle,
                tasks: Vec::new(),
            });
        }
        let destinations: Vec<_> = read(&self.destinations).values().cloned().collect();
        for dest in destinations {
            self.spawn_workers(&dest);
        }
        Ok(())
    }

    fn spawn_workers(&self, dest: &Arc<Destination>) {
        let mut running = lock(&self.running);
        let Some(running) = running.as_mut() else {
            return;
        };
        for lane in 0..dest.options.max_in_flight.max(1) {
            let worker = Worker {
                dest: dest.clone(),
                audit: self.audit.clone(),
                policy: self.policy,
                shutdown: self.shutdown.subscribe(),
                lane,
            };
            running.spawn_lane(dest, worker.run());
        }
        // One ack poller per destination; it sleeps without a timer unless a lease waits
        // for an indexer ack.
        let poller = crate::indexer_ack::run(
            dest.clone(),
            self.audit.clone(),
            self.shutdown.subscribe(),
            self.settle_by.subscribe(),
        );
        running.spawn_lane(dest, poller);
    }

    /// Routes one event; returns once it is durable in every matching queue.
    pub fn dispatch(&self, event: &ScanEvent) -> Result<DispatchReport, EngineError> {
        self.dispatch_batch(std::slice::from_ref(event))
    }

    /// Routes a batch; returns once every event is durable in every matching queue, with
    /// one group commit for the whole batch. Blocks: call it from a blocking context (or
    /// use [`SiemDispatcher::dispatch_batch_async`]).
    pub fn dispatch_batch(&self, events: &[ScanEvent]) -> Result<DispatchReport, EngineError> {
        self.dispatch_batch_marked(events, None)
    }

    /// As `dispatch_batch`, and sets `marker` in the same durable step (the spool intake
    /// records "this file was ingested" this way, so a crash neither loses nor repeats it).
    pub fn dispatch_batch_marked(
        &self,
        events: &[ScanEvent],
        marker: Option<(&[u8], &[u8])>,
    ) -> Result<DispatchReport, EngineError> {
        // Parsed events always pass; events built in code are checked so that every queued
        // record decodes again (a failure here rejects the whole batch, nothing queued).
        if let Some(why) = events.iter().find_map(|e| e.check().err()) {
            return Err(EngineError::InvalidEvent(why));
        }
        let records: Vec<Vec<u8>> = events.iter().map(ScanEvent::to_queue_bytes).collect();
        let routed = events.iter().zip(&records).map(|(event, record)| {
            let customer = (event.mssp_id.as_deref(), event.customer_id.as_str());
            (record.as_slice(), customer)
        });
        self.route_and_append(routed, events.len(), marker)
    }

    /// As `dispatch_batch_marked`, for events already in their queue form (the spool
    /// intake encodes agent lines straight to records: `ScanEvent::encode_line`).
    pub fn dispatch_encoded_marked(
        &self,
        events: &[EncodedEvent],
        marker: Option<(&[u8], &[u8])>,
    ) -> Result<DispatchReport, EngineError> {
        let routed = events.iter().map(|event| {
            let customer = (event.mssp_id.as_deref(), event.customer_id.as_str());
            (event.record.as_slice(), customer)
        });
        self.route_and_append(routed, events.len(), marker)
    }

    /// Routes each record by its customer (mssp id, customer id) into its destinations'
    /// queues (or the unrouted queue) and appends them all, with `marker`, in one durable
    /// group. A run of records of one customer (the usual spool file) is routed once.
    fn route_and_append<'a>(
        &self,
        events: impl Iterator<Item = (&'a [u8], Customer<'a>)>,
        count: usize,
        marker: Option<(&[u8], &[u8])>,
    ) -> Result<DispatchReport, EngineError> {
        let routes = read(&self.routes);
        let mut report = DispatchReport {
            accepted: count,
            ..DispatchReport::default()
        };
        // Records by queue name. Each customer is routed once per call: `resolved` holds its
        // bucket indexes (and whether it went to the unrouted queue), `targets` the current
        // customer's.
        let mut buckets: Vec<(String, Vec<&[u8]>)> = Vec::new();
        let mut bucket_of: HashMap<String, usize> = HashMap::new();
        let mut resolved: HashMap<Customer<'_>, (Vec<usize>, bool)> = HashMap::new();
        let mut current: Option<Customer<'_>> = None;
        let mut targets: Vec<usize> = Vec::new();
        let mut unrouted = false;
        for (bytes, customer) in events {
            if current != Some(customer) {
                current = Some(customer);
                let (indexes, no_destination) = resolved.entry(customer).or_insert_with(|| {
                    let key = CustomerKey::of_event(customer.0, customer.1);
                    let mut names = routes.queues(&key);
                    let no_destination = names.is_empty();
                    if no_destination {
                        self.note_unrouted(&key);
                        names.push(queue_names::UNROUTED.to_string());
                    }
                    let indexes = names
                        .into_iter()
                        .map(|name| {
                            *bucket_of.entry(name.clone()).or_insert_with(|| {
                                buckets.push((name, Vec::new()));
                                buckets.len() - 1
                            })
                        })
                        .collect();
                    (indexes, no_destination)
                });
                targets.clear();
                targets.extend_from_slice(indexes);
                unrouted = *no_destination;
            }
            for &index in &targets {
                buckets[index].1.push(bytes);
            }
            if unrouted {
                report.unrouted += 1;
            } else {
                report.queued += targets.len();
            }
        }
        let parts: Vec<(&str, &[&[u8]])> = buckets
            .iter()
            .map(|(name, records)| (name.as_str(), records.as_slice()))
            .collect();
        if !parts.is_empty() || marker.is_some() {
            self.store.append_group(&parts, marker)?;
        }
        drop(routes);
        self.unrouted_total
            .fetch_add(report.unrouted as u64, Ordering::Relaxed);
        let metrics = self.audit.metrics();
        metrics.unrouted(report.unrouted);
        let destinations = read(&self.destinations);
        for (name, records) in &buckets {
            if let Some(dest) =
                queue_names::destination_of(name).and_then(|id| destinations.get(id))
            {
                metrics.queued(&dest.id, dest.customer_label(), records.len());
                dest.wake.notify_waiters();
                dest.wake.notify_one();
            }
        }
        Ok(report)
    }

    /// `dispatch_batch` on the storage pool.
    pub async fn dispatch_batch_async(
        self: &Arc<Self>,
        events: Vec<ScanEvent>,
    ) -> Result<DispatchReport, EngineError> {
        let this = self.clone();
        crate::storage_pool::spawn(move || this.dispatch_batch(&events))
            .await
            .map_err(|e| EngineError::Task(e.to_string()))?
    }

    /// Called under the routes lock, before the event is appended to the unrouted queue.
    fn note_unrouted(&self, key: &CustomerKey) {
        if let Some(waiting) = lock(&self.unrouted_customers).as_mut() {
            waiting.insert(key.clone());
        }
        if lock(&self.unrouted_warned).insert(key.clone()) {
            tracing::warn!(customer = %key, "no destination for this customer: its events are kept as unrouted until one is configured");
        }
    }

    /// Live figures: audit counters plus every queue's depth and state.
    pub fn stats(&self) -> EngineStats {
        let audit = self.audit.stats();
        let destinations = read(&self.destinations)
            .values()
            .map(|dest| DestinationReport {
                id: dest.id.clone(),
                customer: dest.customer.clone(),
                siem_type: dest.adapter.borrow().config().siem_type.to_string(),
                state: dest.state(),
                enabled: *dest.enabled.borrow(),
                queue: dest.queue.stats(),
                dead_letters: dest.dead_letters.stats(),
                marks: dest.marks(),
                counters: audit
                    .destinations
                    .get(&dest.id)
                    .copied()
                    .unwrap_or_default(),
            })
            .collect();
        EngineStats {
            total: audit.total,
            destinations,
            unrouted: self.unrouted.stats(),
            kept_queues: self.kept_queues(),
        }
    }

    /// The queues of destinations not registered (removed, their queue kept) that still
    /// hold events.
    fn kept_queues(&self) -> Vec<KeptQueue> {
        let Ok(names) = self.store.list_queues() else {
            return Vec::new();
        };
        let registered: HashSet<DestinationId> = read(&self.destinations).keys().cloned().collect();
        names
            .iter()
            .filter_map(|name| {
                let id = queue_names::destination_of(name)?;
                if registered.contains(id) {
                    return None;
                }
                let queue = self.store.open_queue(name).ok()?.stats();
                (queue.len > 0).then(|| KeptQueue {
                    id: id.to_string(),
                    queue,
                })
            })
            .collect()
    }

    /// Events waiting in the destinations' queues (what [`EngineStats::queued`] sums),
    /// without the rest of the figures: cheap enough for a progress bar.
    pub fn queued(&self) -> u64 {
        read(&self.destinations)
            .values()
            .map(|dest| dest.queue.stats().len)
            .sum()
    }

    /// The state of one destination.
    pub fn state(&self, id: &str) -> Result<DestinationState, EngineError> {
        Ok(self.destination(id)?.state())
    }

    /// Carries over when the SIEM last accepted a request of `id` (ms since the epoch) from
    /// an earlier run, unless this run has delivered since: a restart is no news about
    /// the SIEM.
    pub fn restore_last_delivery(&self, id: &str, time_ms: u64) -> Result<(), EngineError> {
        let dest = self.destination(id)?;
        let mut marks = dest.marks.lock().unwrap_or_else(|e| e.into_inner());
        marks.last_delivery_ms = Some(marks.last_delivery_ms.unwrap_or(0).max(time_ms));
        Ok(())
    }

    pub fn audit(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    pub fn store(&self) -> &Arc<dyn QueueStore> {
        &self.store
    }

    pub(crate) fn destination(&self, id: &str) -> Result<Arc<Destination>, EngineError> {
        read(&self.destinations)
            .get(id)
            .cloned()
            .ok_or_else(|| EngineError::UnknownDestination(id.to_string()))
    }
}

/// An event's (mssp id, customer id), borrowed from it.
type Customer<'a> = (Option<&'a str>, &'a str);

/// A stable id: `<mssp>/<customer>/<type>` or `global/<type>/<hash of the URL>`.
fn derive_id(
    adapter: &dyn SiemAdapter,
    customer: Option<&CustomerKey>,
) -> Result<DestinationId, EngineError> {
    let config = adapter.config();
    Ok(match customer {
        Some(key) => {
            // `/` separates the parts: MSSP `a/b` + customer `c` would be MSSP `a` +
            // customer `b/c`, one id and one queue for two tenants.
            if key.mssp_id.contains('/') || key.customer_id.contains('/') {
                return Err(EngineError::InvalidId {
                    id: format!("{}/{}", key.mssp_id, key.customer_id),
                    why: "an MSSP or customer id contains '/'",
                });
            }
            format!("{}/{}/{}", key.mssp_id, key.customer_id, config.siem_type)
        }
        None => {
            let hash = crate::dead_letter::fnv1a64(config.endpoint_url.as_bytes());
            format!("global/{}/{:08x}", config.siem_type, hash as u32)
        }
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}
fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

impl From<QueueError> for EngineError {
    fn from(e: QueueError) -> Self {
        EngineError::Queue(e)
    }
}

/// How many requests of a destination may wait for their indexer ack.
fn ack_window(adapter: &dyn SiemAdapter) -> usize {
    adapter
        .indexer_ack()
        .map_or(raxe_adapters::config::DEFAULT_ACK_MAX_PENDING, |ack| {
            ack.max_pending()
        })
}
