//! One registered destination: its queues, its adapter, its live state.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use raxe_adapters::adapter::SiemAdapter;
use raxe_storage::{Queue, QueueStore};
use serde::Serialize;
use tokio::sync::{watch, Notify};

use crate::routing::{CustomerKey, DestinationId};

/// What a destination is doing, for stats, logs and health checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum DestinationState {
    /// Delivering (or idle with nothing to deliver).
    Ok,
    /// A request failed and is being tried again (its retry count is not spent yet):
    /// throttled (429), a SIEM not ready (a Logs Ingestion 403), a 5xx. Events wait; the
    /// next delivery makes it `Ok` again, spent retries make it `Degraded`.
    Retrying(String),
    /// Retries exhausted; still retrying on a capped schedule.
    Degraded(String),
    /// The SIEM refused the credentials. Nothing is sent until the configuration changes.
    AuthFailed(String),
    /// The SIEM says the configuration is wrong. Nothing is sent until it changes.
    Misconfigured(String),
    /// Disabled by the operator: events accumulate and are delivered when enabled.
    Disabled,
}

impl DestinationState {
    /// Delivering: `Ok`, or only retrying a request (a stop or another halt is worse news,
    /// which these do not overwrite).
    pub fn is_delivering(&self) -> bool {
        matches!(self, DestinationState::Ok | DestinationState::Retrying(_))
    }

    /// True when the destination needs an operator (bad token, wrong URL).
    pub fn is_stopped(&self) -> bool {
        matches!(
            self,
            DestinationState::AuthFailed(_) | DestinationState::Misconfigured(_)
        )
    }
}

/// Per-destination options that are the engine's business, not the SIEM's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DestinationOptions {
    /// Requests in flight at once. 1 (the default) preserves order.
    pub max_in_flight: usize,
    /// Largest batch in payload bytes (before encoding).
    pub max_batch_bytes: usize,
}

impl Default for DestinationOptions {
    fn default() -> Self {
        DestinationOptions {
            max_in_flight: 1,
            max_batch_bytes: 1_000_000,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryMarks {
    /// When the SIEM last accepted a request (ms since epoch).
    pub last_delivery_ms: Option<u64>,
    /// The last failure, as the operator should read it.
    pub last_error: Option<String>,
}

pub(crate) struct Destination {
    pub id: DestinationId,
    pub customer: Option<CustomerKey>,
    pub queue: Arc<dyn Queue>,
    pub dead_letters: Arc<dyn Queue>,
    /// The store both queues live in (for the dead-letter markers, see `delivery.rs`).
    pub store: Arc<dyn QueueStore>,
    pub adapter: watch::Sender<Arc<dyn SiemAdapter>>,
    pub enabled: watch::Sender<bool>,
    pub options: DestinationOptions,
    /// Pinged on every append, so an idle worker wakes up at once.
    pub wake: Notify,
    pub state: Mutex<DestinationState>,
    pub marks: Mutex<DeliveryMarks>,
    /// Set when the worker should not wait for a full batch (drain, shutdown flush).
    pub flush_now: Arc<AtomicBool>,
    /// Set when the destination was removed or replaced: its workers exit.
    pub retired: AtomicBool,
    /// Leases accepted by the SIEM that wait for their indexer ack (Splunk `useACK`).
    pub acks: crate::indexer_ack::AckTracker,
    /// This destination's tasks (workers, ack poller) still running; see [`Lane`].
    pub lanes: watch::Sender<usize>,
    /// The tasks of the destination this one replaced (over the same queue), if any. This
    /// one's workers deliver only once those have stopped: one queue never has two
    /// generations of workers, which could overtake a batch still in flight (order) and
    /// hold a batch each (duplicates after a crash).
    pub predecessor: Option<watch::Receiver<usize>>,
}

/// One running task of a destination, counted in its `lanes` until dropped.
pub(crate) struct Lane(Arc<Destination>);

impl Drop for Lane {
    fn drop(&mut self) {
        self.0.lanes.send_modify(|n| *n -= 1);
    }
}

impl Destination {
    pub fn customer_label(&self) -> Option<String> {
        self.customer.as_ref().map(|c| c.to_string())
    }

    pub fn set_state(&self, state: DestinationState) {
        let mut current = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.change_state(&mut current, state);
    }

    /// Sets `state` only if the current one passes `replaces` (one lock: a state another
    /// task sets meanwhile is not overwritten).
    pub fn replace_state_if(
        &self,
        replaces: impl FnOnce(&DestinationState) -> bool,
        state: DestinationState,
    ) {
        let mut current = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if replaces(&current) {
            self.change_state(&mut current, state);
        }
    }

    /// Logs a change of state and makes it.
    fn change_state(&self, current: &mut DestinationState, state: DestinationState) {
        if *current != state {
            // Retrying and back is the SIEM's weather (a 429 now and then): debug only.
            let weather = matches!(current, DestinationState::Retrying(_));
            match &state {
                DestinationState::Ok if weather => {
                    tracing::debug!(destination = %self.id, "delivering again")
                }
                DestinationState::Ok => tracing::info!(destination = %self.id, "delivering"),
                DestinationState::Retrying(reason) => {
                    tracing::debug!(destination = %self.id, %reason, "retrying a request")
                }
                DestinationState::Degraded(reason) => {
                    tracing::warn!(destination = %self.id, %reason, "destination degraded, events stay queued")
                }
                DestinationState::AuthFailed(reason) | DestinationState::Misconfigured(reason) => {
                    tracing::error!(destination = %self.id, %reason, "destination stopped until its configuration changes; events stay queued")
                }
                DestinationState::Disabled => {
                    tracing::info!(destination = %self.id, "disabled, events accumulate")
                }
            }
            *current = state;
        }
    }

    pub fn state(&self) -> DestinationState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn mark_delivered(&self, time_ms: u64) {
        self.marks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_delivery_ms = Some(time_ms);
    }

    pub fn mark_error(&self, error: String) {
        self.marks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_error = Some(error);
    }

    pub fn marks(&self) -> DeliveryMarks {
        self.marks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Tells this destination's workers to exit (removed, or replaced by a new scope).
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
        // Wake every waiter: changing `enabled` does, and a retired worker checks first.
        self.enabled.send_modify(|_| {});
        self.wake.notify_waiters();
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    /// Resolves once the destination is retired, for waits that must end then.
    pub async fn retired(&self) {
        // `retire` marks `enabled` changed, which a watch never misses: subscribe first,
        // then look at the flag.
        let mut enabled = self.enabled.subscribe();
        while !self.is_retired() {
            if enabled.changed().await.is_err() {
                // Unreachable while `self` lives (it owns the sender).
                std::future::pending::<()>().await;
            }
        }
    }

    /// Counts a task about to be spawned for this destination, until the lane is dropped.
    pub fn lane(self: &Arc<Self>) -> Lane {
        self.lanes.send_modify(|n| *n += 1);
        Lane(self.clone())
    }

    /// Waits until the tasks of the destination this one replaced have stopped; false
    /// when the engine stops first.
    pub async fn predecessor_stopped(&self, shutdown: &mut watch::Receiver<bool>) -> bool {
        let Some(mut before) = self.predecessor.clone() else {
            return true;
        };
        tokio::select! {
            // An error means the predecessor itself is gone, and so are its tasks.
            _ = before.wait_for(|running| *running == 0) => true,
            _ = shutdown.wait_for(|stop| *stop) => false,
        }
    }

    pub fn flushing(&self) -> bool {
        self.flush_now.load(Ordering::Relaxed)
    }
}
