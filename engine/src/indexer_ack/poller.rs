//! The ack poller: one task per destination that polls Splunk for the ack ids its
//! tracker holds, acks confirmed leases in the queue, gives back timed-out ones, and tells
//! workers (state, recoveries) when those acks fail or work again.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raxe_adapters::adapter::SiemAdapter;
use raxe_adapters::outcome::Outcome;
use raxe_storage::{Lease, Queue};
use tokio::sync::watch;

use super::{Pending, IDLE_CHECK};
use crate::audit::{AuditKind, AuditLog};
use crate::delivery::Halt;
use crate::destination::{Destination, DestinationState};

/// While the tracker is full (workers wait for room) or a drain waits for acks, polls are
/// not held to the ack interval: otherwise a busy destination could send no more than
/// `cap` requests per interval (64 of 100 events per 10 s by default: 640 events/s). They
/// follow how long the requests have waited since the last poll that confirmed anything:
/// at 1, 2, 3 and 4 s, then each a quarter later than the one before, and never more than
/// the interval apart. An indexer that takes 1.5 s is confirmed at the 2 s look (with a
/// step that doubled after each empty poll, at 3 s), and a stuck one is polled less and
/// less (see [`full_poll_due`]). Once a poll confirmed some, the rest of the window is also
/// looked at when it has waited as long as they had (see [`indexed_due`]).
const FIRST_LOOK: Duration = Duration::from_secs(1);
/// Looks a [`FIRST_LOOK`] apart up to this many; then a quarter of the wait apart.
const EVEN_LOOKS: u32 = 4;
/// Never two polls closer than this (a poll's answer may come late, or the oldest request
/// may change).
const MIN_POLL_GAP: Duration = Duration::from_millis(250);

/// How often the poller polls while the service stops and requests wait for their ack.
const POLL_WHEN_STOPPING: Duration = Duration::from_millis(500);

/// Runs a destination's ack poller until shutdown or until the destination is retired;
/// then releases whatever is still pending. On shutdown it first gives the indexer until
/// `settle_by` says to confirm what waits (see [`settle`]).
pub(crate) async fn run(
    dest: Arc<Destination>,
    audit: Arc<AuditLog>,
    mut shutdown: watch::Receiver<bool>,
    settle_by: watch::Receiver<Option<Instant>>,
) {
    let mut enabled_rx = dest.enabled.subscribe();
    let mut adapter_rx = dest.adapter.subscribe();
    // A hand-over may come before this task first looks; its ids are not indexed yet either.
    let first_interval = adapter_rx.borrow().indexer_ack().map(|a| a.interval());
    let mut next_poll = Instant::now() + first_interval.unwrap_or(IDLE_CHECK);
    let mut last_poll = Instant::now();
    // The last poll that confirmed something, or the start of a busy spell.
    let mut last_progress = last_poll;
    // How long the youngest request that poll confirmed had waited when it was sent (see
    // `indexed_due`), for this adapter; and when the last poll was sent.
    let mut indexed_within: Option<(Duration, Arc<dyn SiemAdapter>)> = None;
    let mut last_asked = last_poll;
    loop {
        if *shutdown.borrow() || shutdown.has_changed().is_err() || dest.is_retired() {
            break;
        }
        let adapter: Arc<dyn SiemAdapter> = adapter_rx.borrow_and_update().clone();
        // Another server or indexer may take another time.
        indexed_within.take_if(|(_, learned_for)| !Arc::ptr_eq(learned_for, &adapter));
        let enabled = *enabled_rx.borrow_and_update();
        let target = adapter.indexer_ack().map(|a| a.ack_target());
        release_unpollable(&dest, target.as_deref(), enabled).await;
        {
            let mut inner = dest.acks.lock();
            if inner
                .halt
                .as_ref()
                .is_some_and(|(a, _)| !Arc::ptr_eq(a, &adapter))
            {
                inner.halt = None;
            }
        }
        if target.is_none() {
            // No more acks here to prove the queue's acks work again: the worker's own
            // acks tell now.
            acks_work_again(&dest, None);
        }
        let interval = adapter
            .indexer_ack()
            .map(|a| a.interval())
            .unwrap_or(IDLE_CHECK);
        if dest.acks.pending() == 0 {
            // Idle destinations cost no timer: wait for a hand-over or a change.
            tokio::select! {
                _ = dest.acks.added.notified() => {
                    // An id just issued is not indexed yet: first look one interval later
                    // (or, should the tracker fill up, at the first look: a new busy spell
                    // starts its wait here).
                    next_poll = next_poll.max(Instant::now() + interval);
                    last_poll = Instant::now();
                    last_progress = last_poll;
                }
                _ = shutdown.changed() => {}
                _ = enabled_rx.changed() => {}
                _ = adapter_rx.changed() => {}
            }
            continue;
        }
        let now = Instant::now();
        // Full, or drained (`raxe drain` waits for these acks): not held to the interval.
        let due = if dest.acks.full() || dest.flushing() {
            let oldest = dest.acks.oldest_since().unwrap_or(now);
            let due = full_poll_due(last_progress.max(oldest), last_poll, interval);
            let within = indexed_within.as_ref().map(|(within, _)| *within);
            let indexed = indexed_due(oldest, within, last_asked, last_poll);
            next_poll.min(indexed.map_or(due, |d| d.min(due)))
        } else {
            next_poll
        };
        if now < due {
            tokio::select! {
                _ = tokio::time::sleep(due - now) => {}
                // A hand-over may have filled the tracker: look at `due` again.
                _ = dest.acks.added.notified() => {}
                _ = shutdown.changed() => {}
                _ = enabled_rx.changed() => {}
                _ = adapter_rx.changed() => {}
            }
            continue;
        }
        next_poll = now + interval;
        last_asked = now;
        let confirmed = poll_once(&dest, &audit, &adapter, &mut shutdown, None).await;
        // From the answer: a slow poll is not followed by another at once.
        last_poll = Instant::now();
        if let Some(youngest) = confirmed {
            last_progress = last_poll;
            indexed_within = Some((now.saturating_duration_since(youngest), adapter));
        }
    }
    if *shutdown.borrow_and_update() && !dest.is_retired() {
        let until = *settle_by.borrow();
        if let Some(until) = until {
            settle(&dest, &audit, &mut shutdown, until, last_poll).await;
        }
    }
    dest.acks.lock().closed = true;
    let left = dest.acks.take(|_| true);
    if !left.is_empty() && *shutdown.borrow() {
        tracing::warn!(destination = %dest.id, requests = left.len(), "stopping before the indexer confirmed these requests: their events are sent again on the next start");
    }
    release(&dest, left, "stopping").await;
}

/// When a full tracker should be polled to see its oldest request (handed over at
/// `oldest`) confirmed, if it takes as long as the youngest one the last confirming poll
/// confirmed had waited (`indexed_within`): a window is handed over over some tens of
/// milliseconds, so a look at a whole second of wait sees only its first requests
/// indexed, and the rest, a few milliseconds short, would wait a whole second more. Not
/// when that request had waited so long already when the last poll was sent
/// (`last_asked`) and was not confirmed: then the schedule of [`full_poll_due`] alone
/// holds. Never less than [`MIN_POLL_GAP`] after the last poll's answer (`last_poll`).
fn indexed_due(
    oldest: Instant,
    indexed_within: Option<Duration>,
    last_asked: Instant,
    last_poll: Instant,
) -> Option<Instant> {
    let due = oldest + indexed_within?;
    (due > last_asked).then(|| due.max(last_poll + MIN_POLL_GAP))
}

/// When a full tracker is polled next, for requests waiting since `waiting_since` (the
/// later of the oldest hand-over and the last poll that confirmed anything) and a last
/// poll answered at `last_poll`: the first look (a [`FIRST_LOOK`] step while the wait is
/// short, a quarter of the wait after that) past the wait at the last poll, at least
/// [`MIN_POLL_GAP`] and at most `interval` after it.
fn full_poll_due(waiting_since: Instant, last_poll: Instant, interval: Duration) -> Instant {
    // A look scheduled at 2 s is answered a little later: that poll was the 2 s look.
    const SLACK: Duration = Duration::from_millis(50);
    let waited = last_poll.saturating_duration_since(waiting_since) + SLACK;
    let next_look = if waited < FIRST_LOOK * EVEN_LOOKS {
        let looks_done = (waited.as_nanos() / FIRST_LOOK.as_nanos()) as u32;
        FIRST_LOOK * (looks_done + 1)
    } else {
        waited + waited / 4
    };
    let due = waiting_since + next_look;
    due.clamp(
        last_poll + MIN_POLL_GAP,
        last_poll + interval.max(MIN_POLL_GAP),
    )
}

/// On shutdown, polls every [`POLL_WHEN_STOPPING`] until `until` while requests wait for
/// their ack or a worker may still hand one over, acking what the indexer confirms: a
/// planned restart then sends again only what Splunk has not indexed yet (Splunk does not
/// de-duplicate). Ends as soon as nothing is left to wait for, and early when the
/// destination is disabled, retired or stopped (bad credentials or configuration), or
/// when a round of queue acks fails. The caller marks `shutdown` seen, so a poll is abandoned only at `until` or if
/// the dispatcher goes away; the queue acks of what it confirmed are always finished.
async fn settle(
    dest: &Arc<Destination>,
    audit: &AuditLog,
    shutdown: &mut watch::Receiver<bool>,
    until: Instant,
    last_poll: Instant,
) {
    let waiting = dest.acks.pending();
    if waiting > 0 {
        tracing::info!(destination = %dest.id, requests = waiting, up_to = ?until.saturating_duration_since(Instant::now()), "stopping: waiting for the indexer to confirm requests");
    }
    // This task is one of the destination's lanes: more than one means a worker runs.
    let mut lanes = dest.lanes.subscribe();
    let failed_rounds = dest.acks.failed_rounds();
    let until = tokio::time::Instant::from_std(until);
    let mut next_poll = tokio::time::Instant::from_std(last_poll + POLL_WHEN_STOPPING);
    loop {
        let adapter: Arc<dyn SiemAdapter> = dest.adapter.borrow().clone();
        let enabled = *dest.enabled.borrow();
        let Some(target) = adapter.indexer_ack().map(|a| a.ack_target()) else {
            return;
        };
        // Stopped by a poll, or by a worker's own request (a bad token): no answer will come.
        if !enabled
            || dest.is_retired()
            || dest.acks.halt_for(&adapter).is_some()
            || dest.state().is_stopped()
        {
            return;
        }
        // Requests of an earlier channel or server are never confirmed: not waited for.
        release_unpollable(dest, Some(&target), true).await;
        let workers_done = *lanes.borrow_and_update() <= 1;
        let now = tokio::time::Instant::now();
        if (dest.acks.pending() == 0 && workers_done)
            || now >= until
            || dest.acks.failed_rounds() != failed_rounds
        {
            return;
        }
        if dest.acks.pending() > 0 && now >= next_poll {
            poll_once(dest, audit, &adapter, shutdown, Some(until)).await;
            next_poll = tokio::time::Instant::now() + POLL_WHEN_STOPPING;
            // What it confirmed, released or stopped may have ended the wait.
            continue;
        }
        // A worker that ends may have handed a request over: look again (the next poll
        // still waits for its turn).
        let wake = if dest.acks.pending() > 0 {
            next_poll
        } else {
            until
        }
        .min(until);
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = lanes.changed() => {}
        }
    }
}

/// Releases the requests that `target` (the adapter's ack channel and server, if it has
/// indexer acks) can never confirm: ids from another channel or server (a changed
/// configuration), and everything when the destination is disabled (it sends nothing,
/// polls included).
async fn release_unpollable(dest: &Arc<Destination>, target: Option<&str>, enabled: bool) {
    let stale = dest
        .acks
        .take(|p| !enabled || target != Some(p.target.as_str()));
    release(
        dest,
        stale,
        "the destination's configuration changed or it was disabled",
    )
    .await;
}

/// One poll of every pending id of `adapter`: acks the confirmed leases, releases the
/// timed-out ones. When it confirmed any: when the youngest of them was handed over.
async fn poll_once(
    dest: &Arc<Destination>,
    audit: &AuditLog,
    adapter: &Arc<dyn SiemAdapter>,
    shutdown: &mut watch::Receiver<bool>,
    give_up_at: Option<tokio::time::Instant>,
) -> Option<Instant> {
    let ack = adapter.indexer_ack()?;
    // Only ids of this adapter's channel: another channel's ids are other requests.
    let target = ack.ack_target();
    let ours = |p: &Pending| p.target == target;
    let (ids, asked): (Vec<u64>, HashSet<u64>) = {
        let inner = dest.acks.lock();
        let waiting: Vec<&Pending> = inner.pending.iter().filter(|p| ours(p)).collect();
        let ids: BTreeSet<u64> = waiting.iter().map(|p| p.ack_id).collect();
        (
            ids.into_iter().collect(),
            waiting.iter().map(|p| p.serial).collect(),
        )
    };
    if ids.is_empty() {
        return None;
    }
    let give_up = async {
        match give_up_at {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    let answer = tokio::select! {
        answer = ack.poll(&ids) => answer,
        // A poll may take up to the request timeout; shutdown does not wait for it
        // (nothing was taken out of `pending` yet, so the caller releases everything).
        _ = shutdown.changed() => return None,
        _ = give_up => return None,
    };
    let done = match answer {
        Ok(done) => done,
        Err(Outcome::Retry { reason, .. }) => {
            // Not fatal: the ids stay pending and time out as usual.
            tracing::warn!(destination = %dest.id, %reason, "ack poll failed; will poll again");
            dest.mark_error(format!("ack poll failed: {reason}"));
            BTreeSet::new()
        }
        Err(Outcome::AuthFailed { reason }) => {
            stop(dest, adapter, Halt::AuthFailed(reason)).await;
            return None;
        }
        Err(Outcome::Misconfigured { reason }) => {
            stop(dest, adapter, Halt::Misconfigured(reason)).await;
            return None;
        }
        Err(other) => {
            let reason = format!("unexpected ack poll outcome: {other:?}");
            stop(dest, adapter, Halt::Misconfigured(reason)).await;
            return None;
        }
    };
    let timeout = ack.timeout();
    // Answers count only for the entries asked about: after a restart noted meanwhile, a
    // `true` may be about a new request that reuses an old id (the old entry was released
    // then, the new one was not asked about).
    let acked = dest
        .acks
        .take_for_ack(|p| asked.contains(&p.serial) && done.contains(&p.ack_id));
    let expired = dest.acks.take(|p| p.since.elapsed() >= timeout);
    // When the youngest request confirmed was handed over.
    let confirmed = acked.iter().map(|p| p.since).max();
    if confirmed.is_some() {
        let events: usize = acked.iter().map(|p| p.events).sum();
        tracing::debug!(destination = %dest.id, requests = acked.len(), events, "indexer acknowledged");
        audit.record(
            &dest.id,
            dest.customer_label(),
            AuditKind::Indexed { events },
        );
        let (queue, store) = (dest.queue.clone(), dest.store.clone());
        let count = acked.len();
        let done = crate::storage_pool::spawn(move || {
            let mut all_held = true;
            for p in acked {
                // A failed ack loses nothing (see `ack_whole_lease`); the markers stay.
                if crate::delivery::ack_whole_lease(&*queue, p.lease, &mut || {}) {
                    crate::dead_letter::remove_markers(&*store, p.dead_letter_markers);
                } else {
                    all_held = false;
                }
            }
            all_held
        })
        .await;
        let all_held = done.unwrap_or_else(|e| {
            tracing::error!(destination = %dest.id, error = %e, "ack task failed");
            false
        });
        // The state says it at once, even with no worker sending (the sled store counts a
        // failed ack's records as acked in memory: the queue may look empty). Only from Ok
        // (or retrying) and back: a stop or another halt a worker set stays.
        dest.acks.acked(count, all_held, |failing| match failing {
            Some(true) => {
                dest.replace_state_if(DestinationState::is_delivering, ack_failure_state())
            }
            Some(false) => {
                dest.replace_state_if(|s| *s == ack_failure_state(), DestinationState::Ok)
            }
            None => {}
        });
    }
    if !expired.is_empty() {
        tracing::warn!(destination = %dest.id, requests = expired.len(), ?timeout, "no indexer ack in time; sending the events again");
        dest.mark_error(format!(
            "{} request(s) not acknowledged by the indexer within {} s; resent",
            expired.len(),
            timeout.as_secs()
        ));
        release(dest, expired, "ack timeout").await;
    }
    confirmed
}

/// Acks of `dest`'s queue work again though no poll's round said so: a worker's own ack
/// (of dead letters) held, or no poller acks here any more (`seen_rounds: None`). If they
/// were failing, the state turns back to Ok (only from the ack failure's) and paused
/// workers go on. A worker passes [`AckTracker::failed_rounds`] as read before its ack: a
/// round that failed meanwhile is newer news than its ack, and stands.
pub(crate) fn acks_work_again(dest: &Destination, seen_rounds: Option<u64>) {
    let mut inner = dest.acks.lock();
    if seen_rounds.is_some_and(|seen| seen != inner.failed_rounds) {
        return;
    }
    if std::mem::take(&mut inner.acks_failing) {
        dest.replace_state_if(|s| *s == ack_failure_state(), DestinationState::Ok);
        drop(inner);
        dest.acks.recovered();
    }
}

/// The destination's state while acks of confirmed leases fail in the queue.
pub(crate) fn ack_failure_state() -> DestinationState {
    DestinationState::Degraded(crate::delivery::ACK_FAILED.into())
}

/// A poll said stop: remember it for the workers, and give back every pending lease. Not
/// if the adapter was replaced while the poll ran (its answer is about the old one).
async fn stop(dest: &Arc<Destination>, adapter: &Arc<dyn SiemAdapter>, halt: Halt) {
    if !Arc::ptr_eq(&dest.adapter.borrow(), adapter) {
        return;
    }
    let state = match &halt {
        Halt::AuthFailed(reason) => DestinationState::AuthFailed(reason.clone()),
        Halt::Misconfigured(reason) => DestinationState::Misconfigured(reason.clone()),
        _ => return,
    };
    dest.acks.lock().halt = Some((adapter.clone(), halt));
    dest.set_state(state);
    let all = dest.acks.take(|_| true);
    release(dest, all, "the ack poll failed for good").await;
}

/// Returns leases to the queue (their events are sent again) and wakes the workers.
async fn release(dest: &Arc<Destination>, pending: Vec<Pending>, why: &'static str) {
    if pending.is_empty() {
        return;
    }
    tracing::debug!(destination = %dest.id, requests = pending.len(), why, "releasing leases that wait for an ack");
    let leases = pending.into_iter().map(|p| p.lease).collect();
    release_leases(dest.queue.clone(), leases).await;
    dest.acks.room.notify_waiters();
    dest.wake.notify_one();
}

pub(crate) async fn release_leases(queue: Arc<dyn Queue>, leases: Vec<Lease>) {
    if leases.is_empty() {
        return;
    }
    let _ = crate::storage_pool::spawn(move || {
        for lease in leases {
            queue.release(lease);
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    /// When the next poll comes, as seconds after `waiting_since`, for a last poll answered
    /// `answered` after it.
    fn due_after(answered: Duration, interval: Duration) -> f64 {
        let t0 = Instant::now();
        (full_poll_due(t0, t0 + answered, interval) - t0).as_secs_f64()
    }

    #[test]
    fn a_full_tracker_is_looked_at_each_second_then_a_quarter_of_its_wait_apart() {
        let ten = 10 * S;
        // A poll at each second of the first four, each answered a little late.
        assert_eq!(due_after(Duration::ZERO, ten), 1.0);
        assert_eq!(due_after(1020 * MS, ten), 2.0);
        assert_eq!(due_after(2 * S, ten), 3.0);
        assert_eq!(due_after(3010 * MS, ten), 4.0);
        // Then a quarter of the wait later.
        assert!((due_after(4 * S, ten) - 5.0625).abs() < 1e-9);
        assert!((due_after(8 * S, ten) - 10.0625).abs() < 1e-9);
        // Never more than the interval apart...
        assert_eq!(due_after(60 * S, ten), 70.0);
        assert_eq!(due_after(60 * S, 3 * S), 63.0);
        // An answer that came just before a look stands for it...
        assert_eq!(due_after(980 * MS, ten), 2.0);
        // ...and one that came earlier leaves at least the minimum gap.
        assert!((due_after(900 * MS, ten) - 1.15).abs() < 1e-9);
    }

    #[test]
    fn requests_handed_over_after_the_last_poll_wait_their_first_look() {
        let t0 = Instant::now();
        let since = t0 + 700 * MS;
        assert_eq!(full_poll_due(since, t0, 10 * S), since + S);
    }

    #[test]
    fn the_rest_of_a_window_is_looked_at_when_it_has_waited_what_sufficed_before() {
        let t0 = Instant::now();
        // The last poll, sent at t0 + 2.000 s and answered 5 ms later, confirmed the first
        // requests of a window, the youngest after 2.000 s; the oldest left was handed
        // over 3 ms after the first (so it is due before the answer came).
        let (asked, answered) = (t0 + 2 * S, t0 + 2005 * MS);
        let oldest_left = t0 + 3 * MS;
        let due = |within| indexed_due(oldest_left, within, asked, answered);
        // Due 3 ms after the last poll was sent: at the minimum gap after its answer.
        assert_eq!(due(Some(2 * S)), Some(answered + MIN_POLL_GAP));
        // A wait that sufficed for a later request: its own time.
        assert_eq!(due(Some(2500 * MS)), Some(oldest_left + 2500 * MS));
        // Nothing confirmed yet: the schedule of full_poll_due alone.
        assert_eq!(due(None), None);
        // The oldest had waited that long when the last poll was sent and was not
        // confirmed: the indexer is slower now (or lost it), so no early look.
        assert_eq!(due(Some(1997 * MS)), None);
        assert_eq!(due(Some(1500 * MS)), None);
    }
}
