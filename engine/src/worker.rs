//! The delivery worker: one task (or `max_in_flight` tasks) per destination.
//!
//! A worker waits until its queue holds a full batch or the oldest event has waited
//! `flush_interval_seconds`, leases a batch, and delivers it (see [`crate::delivery`]).
//! Failures shape what it does next: transient ones back off, exhausted retries degrade the
//! destination to a capped retry schedule, auth and configuration errors stop it until its
//! adapter is replaced. It never drops an event and never blocks another destination.
//!
//! Leases, and the ack of a batch the SIEM accepted outright, run on the worker's own task:
//! they take the queue's locks, work on sled's tree (a lease may read a chunk back from
//! sled's file, usually from the OS page cache) and never wait for a flush, and a trip
//! through the storage pool (two thread wake-ups each) cost more CPU than they do (-14%
//! CPU-s per million events to one HEC destination, -12% for CEF over TCP). The part
//! of an ack that would wait for the disk (a journal rotation, or sled's flush when the
//! ack journal is broken) goes to the storage pool and finishes in the background while the
//! worker leases and encodes the next batch (at most one such ack; it is durable before the
//! next batch is sent and finishes before the next batch is acked, before a partial batch
//! is considered and before the worker exits). Either way the ack survives a crash before
//! the next batch is sent, so a crash repeats at most the batch being sent.
//!
//! With indexer acknowledgement a worker does not wait for acks: it hands accepted leases
//! to the destination's ack tracker and goes on, pausing only while the tracker is full,
//! after an ack poll found the configuration or credentials wrong, or while the queue's
//! acks of confirmed leases fail.

use std::sync::Arc;
use std::time::Duration;

use raxe_adapters::adapter::SiemAdapter;
use tokio::sync::watch;

use crate::audit::AuditLog;
use crate::backoff::{Backoff, BackoffPolicy};
use crate::delivery::{DeferredAck, Delivery, Halt};
use crate::destination::{Destination, DestinationState};
use crate::storage_pool;

/// How often a stopped destination repeats its complaint in the log.
const STOPPED_REMINDER: Duration = Duration::from_secs(60);

pub(crate) struct Worker {
    pub dest: Arc<Destination>,
    pub audit: Arc<AuditLog>,
    pub policy: BackoffPolicy,
    pub shutdown: watch::Receiver<bool>,
    /// Which of the destination's `max_in_flight` workers this is.
    pub lane: usize,
}

enum Wait {
    Ready,
    For(Duration),
    Idle,
}

impl Worker {
    pub async fn run(mut self) {
        if !self.dest.predecessor_stopped(&mut self.shutdown).await {
            return;
        }
        let mut pending_ack: Option<DeferredAck> = None;
        self.deliver_until_stopped(&mut pending_ack).await;
        // The last batch's ack, so a clean shutdown does not send it again after a restart.
        if let Some(ack) = pending_ack {
            // Logged where it failed; nothing more to send, so nothing to pause.
            let _ = ack.finish().await;
        }
    }

    async fn deliver_until_stopped(&mut self, pending_ack: &mut Option<DeferredAck>) {
        let mut adapter_rx = self.dest.adapter.subscribe();
        let mut enabled_rx = self.dest.enabled.subscribe();
        let mut backoff = Backoff::new(self.policy);
        // The last batch delivered left the rest of its ack running. Its delivery is not
        // yet proof that this destination is well: the ack may still fail (and halt the
        // next batch), so the degraded schedule is kept until it is known to have held.
        let mut ack_unproven = false;
        // The last round of failed indexer-ack acks this worker paused for.
        let mut acks_paused_for = 0;
        loop {
            if self.stopping() {
                return;
            }
            if !*enabled_rx.borrow_and_update() {
                self.dest.set_state(DestinationState::Disabled);
                tokio::select! {
                    _ = enabled_rx.changed() => continue,
                    _ = self.shutdown.changed() => continue,
                }
            }
            let adapter: Arc<dyn SiemAdapter> = adapter_rx.borrow_and_update().clone();
            if self.dest.state() == DestinationState::Disabled {
                self.dest.set_state(DestinationState::Ok);
            }
            let config = adapter.config();
            let batch_size = config.batch_size.max(1);
            let flush = Duration::from_secs(config.flush_interval_seconds);
            // Overlap the previous batch's ack only with a full next batch (then the batch
            // is ready); otherwise let it finish so that the queue's length and age describe
            // only undelivered events.
            let full_beside_ack = match pending_ack.take() {
                Some(ack) => {
                    let queued = self.dest.queue.stats().len;
                    if queued.saturating_sub(ack.records as u64) >= batch_size as u64 {
                        *pending_ack = Some(ack);
                        true
                    } else {
                        if let Err(halt) = ack.finish().await {
                            ack_unproven = false;
                            if self.on_halt(halt, &mut backoff, &mut adapter_rx).await {
                                return;
                            }
                            continue;
                        }
                        if std::mem::take(&mut ack_unproven) {
                            self.delivered(&mut backoff, adapter.as_ref());
                        }
                        false
                    }
                }
                None => false,
            };
            let wait = if full_beside_ack {
                Wait::Ready
            } else {
                self.readiness(batch_size, flush)
            };
            match wait {
                Wait::Ready => {}
                wait => {
                    let nap = match wait {
                        Wait::For(d) => d,
                        _ => flush.max(Duration::from_secs(1)),
                    };
                    tokio::select! {
                        _ = tokio::time::sleep(nap) => {}
                        _ = self.dest.wake.notified() => {}
                        _ = adapter_rx.changed() => {}
                        _ = enabled_rx.changed() => {}
                        _ = self.shutdown.changed() => {}
                    }
                    continue;
                }
            }
            if adapter.indexer_ack().is_some() {
                self.dest.acks.wait_for_room(&mut self.shutdown).await;
                if self.stopping() {
                    return;
                }
            }
            if let Some(halt) = self.dest.acks.halt_for(&adapter) {
                if self.on_halt(halt, &mut backoff, &mut adapter_rx).await {
                    return;
                }
                continue;
            }
            // After the wait for room: the acks that made it may have failed.
            if adapter.indexer_ack().is_some() {
                let recoveries = self.dest.acks.recoveries();
                if self.dest.acks.ack_failure(acks_paused_for) {
                    self.pause_while_acks_fail(&mut backoff, &mut adapter_rx, recoveries)
                        .await;
                    // Rounds that failed meanwhile were paused for too: one backoff step
                    // per request that tests the acks.
                    acks_paused_for = self.dest.acks.failed_rounds();
                    continue;
                }
            }
            let max_bytes = self.dest.options.max_batch_bytes;
            // Here, not on the storage pool: a lease waits for no flush (see `run_here`).
            let leased = storage_pool::run_here(|| self.dest.queue.lease(batch_size, max_bytes))
                .map_err(|panicked| panicked.to_string())
                .and_then(|leased| leased.map_err(|e| e.to_string()));
            let lease = match leased {
                Ok(Some(lease)) => lease,
                Ok(None) => {
                    // Everything queued is leased by this destination's other lanes.
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        _ = self.dest.wake.notified() => {}
                        _ = self.shutdown.changed() => {}
                    }
                    continue;
                }
                // A panic inside the lease too: retried on the degraded schedule, never at
                // once (nothing else here would yield to the runtime between attempts).
                Err(e) => {
                    tracing::error!(destination = %self.dest.id, error = %e, "cannot read queue");
                    self.dest.set_state(DestinationState::Degraded(e));
                    self.pause(backoff.next_degraded(None), &mut adapter_rx)
                        .await;
                    continue;
                }
            };
            let delivery = Delivery::new(
                &self.dest,
                adapter.as_ref(),
                &self.audit,
                &mut backoff,
                self.shutdown.clone(),
                self.lane,
            );
            match delivery.run(lease, pending_ack).await {
                Ok(()) => {
                    // A run that ends well also proves the previous batch's ack held (it
                    // halts when that ack failed).
                    if ack_unproven || pending_ack.is_none() {
                        self.delivered(&mut backoff, adapter.as_ref());
                    }
                    ack_unproven = pending_ack.is_some();
                }
                Err(halt) => {
                    ack_unproven = false;
                    if self.on_halt(halt, &mut backoff, &mut adapter_rx).await {
                        return;
                    }
                }
            }
        }
    }

    /// A batch was delivered and acked: the destination is well again. With indexer acks,
    /// not while their acks in the queue fail: the batch's own ack is not proven then (see
    /// `indexer_ack`).
    fn delivered(&self, backoff: &mut Backoff, adapter: &dyn SiemAdapter) {
        let mut well = || {
            backoff.reset();
            if self.dest.state() != DestinationState::Ok {
                self.dest.set_state(DestinationState::Ok);
            }
        };
        if adapter.indexer_ack().is_some() {
            self.dest.acks.if_acks(false, well);
        } else {
            well();
        }
    }

    /// Acts on a halt; true when the worker should exit.
    async fn on_halt(
        &mut self,
        halt: Halt,
        backoff: &mut Backoff,
        adapter_rx: &mut watch::Receiver<Arc<dyn SiemAdapter>>,
    ) -> bool {
        match halt {
            Halt::Shutdown => return true,
            Halt::Retry { after, reason } => {
                self.dest.set_state(DestinationState::Degraded(reason));
                let delay = backoff.next_degraded(after);
                self.pause(delay, adapter_rx).await;
            }
            Halt::AuthFailed(reason) => {
                self.dest.set_state(DestinationState::AuthFailed(reason));
                self.stopped(adapter_rx).await;
                self.resume(backoff);
            }
            Halt::Misconfigured(reason) => {
                self.dest.set_state(DestinationState::Misconfigured(reason));
                self.stopped(adapter_rx).await;
                self.resume(backoff);
            }
        }
        false
    }

    /// True once shutdown was asked for, or the engine that owns the signal is gone.
    fn stopping(&self) -> bool {
        *self.shutdown.borrow() || self.shutdown.has_changed().is_err() || self.dest.is_retired()
    }

    /// Whether a batch should go now: a full batch is queued, or the oldest event has
    /// waited a flush interval, or a drain asked to flush.
    fn readiness(&self, batch_size: usize, flush: Duration) -> Wait {
        let stats = self.dest.queue.stats();
        if stats.len == 0 {
            return Wait::Idle;
        }
        if stats.len >= batch_size as u64 || self.dest.flushing() {
            return Wait::Ready;
        }
        let age = stats.oldest_age.unwrap_or(flush);
        if age >= flush {
            Wait::Ready
        } else {
            Wait::For(flush - age)
        }
    }

    /// A new configuration arrived: try again from a clean slate.
    fn resume(&self, backoff: &mut Backoff) {
        backoff.reset();
        if !self.stopping() {
            self.dest.set_state(DestinationState::Ok);
        }
    }

    /// Pauses on the degraded schedule because acks of confirmed leases fail in the queue
    /// (see `indexer_ack`), but goes on as soon as they work again.
    async fn pause_while_acks_fail(
        &mut self,
        backoff: &mut Backoff,
        adapter_rx: &mut watch::Receiver<Arc<dyn SiemAdapter>>,
        mut recoveries: watch::Receiver<u64>,
    ) {
        let state = || self.dest.set_state(crate::indexer_ack::ack_failure_state());
        if !self.dest.acks.if_acks(true, state) {
            return; // They work again already.
        }
        let delay = backoff.next_degraded(None);
        tokio::select! {
            _ = self.pause(delay, adapter_rx) => {}
            _ = recoveries.changed() => {}
        }
    }

    /// Sleeps, but wakes early for shutdown, a new adapter (a fixed configuration) or the
    /// destination's retirement.
    async fn pause(
        &mut self,
        delay: Duration,
        adapter_rx: &mut watch::Receiver<Arc<dyn SiemAdapter>>,
    ) {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = adapter_rx.changed() => {}
            _ = self.shutdown.changed() => {}
            _ = self.dest.retired() => {}
        }
    }

    /// Waits for a configuration change (or shutdown, or retirement), repeating the
    /// complaint every so often.
    async fn stopped(&mut self, adapter_rx: &mut watch::Receiver<Arc<dyn SiemAdapter>>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(STOPPED_REMINDER) => {
                    let queued = self.dest.queue.stats().len;
                    tracing::error!(destination = %self.dest.id, state = ?self.dest.state(), queued, "destination still stopped; fix its configuration");
                }
                _ = adapter_rx.changed() => return,
                _ = self.shutdown.changed() => return,
                _ = self.dest.retired() => return,
            }
        }
    }
}
