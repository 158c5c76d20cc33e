//! Indexer acknowledgement tracking (Splunk `useACK`, protocols.md §1.6), per destination.
//!
//! Promises:
//! - A request the SIEM accepted with an ack id keeps its events leased here; its lease
//!   is acked in the queue only after a poll reported that id `true`, and released (so
//!   the events are sent again) when the id is still not `true` after the ack timeout.
//!   Each lease is acked or released exactly once: an entry leaves `pending` under the
//!   lock before anything is done with its lease.
//! - Workers never wait for an ack: they hand the lease over and lease the next batch.
//!   At most `cap` leases wait here (a worker waits for room), which bounds memory and
//!   the duplicates a resend or a crash can cause.
//! - A server that restarts forgets its ids and counts from 0 again, so an id can come back
//!   for a new request while an old request with that id still waits here. The restart is
//!   noted when a lane reads such an id (`issued`): one not above the id the same lane got
//!   before (a lane sends one request at a time, so its ids only grow), or equal to an id
//!   issued and not yet acked. Then every lease waiting on that server is sent again, and
//!   so is every request answered before the restart was noted but handed over after it,
//!   or sent before it and answered after (its epoch is past: the answer's origin is
//!   unknown). A poll's answers count only for the entries it asked about, and two
//!   hand-overs with one id (a restart no check saw) send both again.
//!   What is left: detection happens when our side reads the reused id, so a `true` the
//!   restarted server gives for that new request before we read its id (a window of one
//!   answer's trip, against indexing times of seconds) could still ack the old one.
//! - Dead-letter markers of records inside a waiting lease (undecodable records between
//!   accepted events) wait with it: removed once it is acked, kept when it is sent again,
//!   so those records are dead-lettered once.
//! - When the queue fails to ack a confirmed lease, its events may come back after a
//!   restart. The destination turns Degraded with the reason, and its workers pause on the
//!   degraded schedule rather than send more requests whose acks may fail too. After each
//!   pause a worker sends again only if no lease waits here, so one request per worker
//!   and pause tests whether acks work again; each round of failed acks pauses every
//!   worker again. The first round whose acks all work lifts the pause, and so does a
//!   worker's own ack (of a lease of dead letters only) that holds.
//! - Pending acks are in memory only ("resend on restart"): after a crash their records
//!   are simply still in the queue and are leased and sent again. On shutdown the poller
//!   first polls, for up to most of the shutdown's deadline, acking what the indexer
//!   confirms (a planned restart then sends again only what was not indexed; not with
//!   `shutdown_releasing_acks`, nor for a disabled or stopped destination); what is left
//!   then, and everything pending on disable, removal or a configuration change, is
//!   released, never acked.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raxe_adapters::adapter::SiemAdapter;
use raxe_storage::Lease;
use tokio::sync::{watch, Notify};

use crate::delivery::Halt;

/// How often the poller looks again when it has nothing to poll or no ack adapter.
const IDLE_CHECK: Duration = Duration::from_millis(200);

/// A lease whose request the SIEM accepted with `ack_id`, handed to the tracker.
pub(crate) struct Tracked {
    pub ack_id: u64,
    /// What [`AckTracker::issued`] said when the id came.
    pub epoch: u64,
    pub lease: Lease,
    /// Dead-letter markers of records in the lease (undecodable records inside the
    /// request's span): removed once the lease is acked, kept when it is sent again so
    /// those records are not dead-lettered twice.
    pub dead_letter_markers: Vec<Vec<u8>>,
}

struct Pending {
    ack_id: u64,
    /// Unique per entry: a poll's answers count only for the entries it asked about (an
    /// entry added after a restart may carry an id the poll asked about for an old one).
    serial: u64,
    /// Without its records: a queue knows a lease by its id.
    lease: Lease,
    /// The lease's records (events and undecodable ones).
    events: usize,
    dead_letter_markers: Vec<Vec<u8>>,
    /// The server and channel that issued the id (`IndexerAck::ack_target`): ids mean
    /// nothing to another one.
    target: String,
    since: Instant,
}

#[derive(Default)]
struct Inner {
    pending: Vec<Pending>,
    /// The last ack id each lane got from each target (server and channel), this epoch.
    last_id_by_lane: HashMap<(String, usize), u64>,
    /// Ids issued this epoch whose lease is not handed over yet, by target.
    outstanding: HashSet<(String, u64)>,
    /// Bumped when a target is seen counting anew (a restart): ids issued before it and
    /// handed over after it are sent again. One for all targets (a destination has one,
    /// unless its channel or URL changes): a restart of one also sends again the other's
    /// requests answered before it, which costs duplicates, never loss.
    epoch: u64,
    /// The last `Pending::serial` given.
    last_serial: u64,
    /// Set once the poller has exited: late hand-overs are released at once.
    closed: bool,
    /// A poll said the configuration or the credentials are wrong, for this adapter.
    halt: Option<(Arc<dyn SiemAdapter>, Halt)>,
    /// Leases taken out of `pending` to be acked in the queue, not done yet. They still
    /// count against `cap`: a worker that waited for room sees how their acks went.
    acking: usize,
    /// The last round of acks (one poll's confirmed leases) had one fail in the queue.
    /// Cleared by a round whose acks all work, a worker's own ack that holds, or when no
    /// poller acks here any more (an adapter without indexer acks); see
    /// [`acks_work_again`]. The destination's state follows it under this lock (see
    /// [`AckTracker::if_acks`]).
    acks_failing: bool,
    /// Rounds with a failed ack so far: a worker pauses once for each (see
    /// [`AckTracker::ack_failure`]).
    failed_rounds: u64,
}

impl Inner {
    /// Removes the pending entries `pick` selects.
    fn take(&mut self, pick: impl FnMut(&Pending) -> bool) -> Vec<Pending> {
        let (taken, kept) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(pick);
        self.pending = kept;
        taken
    }

    fn is_pending(&self, target: &str, ack_id: u64) -> bool {
        self.pending
            .iter()
            .any(|p| p.ack_id == ack_id && p.target == target)
    }

    /// Leases here, waiting for their ack id or for their ack in the queue.
    fn held(&self) -> usize {
        self.pending.len() + self.acking
    }

    /// `target` restarted: a new epoch, in which it has issued nothing yet, and its
    /// pending leases, taken out for release.
    fn counts_anew(&mut self, target: &str) -> Vec<Lease> {
        self.epoch += 1;
        self.last_id_by_lane.retain(|(t, _), _| t != target);
        self.outstanding.retain(|(t, _)| t != target);
        let stale = self.take(|p| p.target == target);
        if stale.is_empty() {
            tracing::debug!(%target, "the SIEM issued an ack id again (restarted?)");
        } else {
            tracing::warn!(%target, requests = stale.len(), "the SIEM issued an ack id again (restarted?): sending the requests that waited for their acks again");
        }
        stale.into_iter().map(|p| p.lease).collect()
    }
}

/// The leases of one destination that wait for their indexer ack.
pub(crate) struct AckTracker {
    inner: Mutex<Inner>,
    /// Pinged whenever `pending` or `acking` shrinks (a worker may be waiting for room).
    room: Notify,
    /// Pinged when a lease is handed over (the poller sleeps without timer when idle).
    added: Notify,
    /// Counts the times acks worked again after they failed (paused workers go on). A
    /// watch, so a worker that subscribes before it checks misses none.
    recoveries: watch::Sender<u64>,
    cap: AtomicUsize,
}

#[cfg(test)]
impl Default for AckTracker {
    fn default() -> Self {
        AckTracker::new(raxe_adapters::config::DEFAULT_ACK_MAX_PENDING)
    }
}

impl AckTracker {
    pub fn new(cap: usize) -> Self {
        AckTracker {
            inner: Mutex::new(Inner::default()),
            room: Notify::new(),
            added: Notify::new(),
            recoveries: watch::Sender::new(0),
            cap: AtomicUsize::new(cap.max(1)),
        }
    }

    /// How many leases may wait (the adapter's `max_pending`; a reload may change it).
    /// More room wakes the workers waiting for it.
    pub fn set_cap(&self, cap: usize) {
        let cap = cap.max(1);
        if self.cap.swap(cap, Ordering::Relaxed) < cap {
            self.room.notify_waiters();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn pending(&self) -> usize {
        self.lock().pending.len()
    }

    /// When the request that has waited longest was handed over.
    fn oldest_since(&self) -> Option<Instant> {
        self.lock().pending.iter().map(|p| p.since).min()
    }

    /// Takes over leases whose requests were accepted with these ack ids, keeping only
    /// what their ack or release needs: the lease's id (see `Lease::without_records`). A
    /// record's bytes are a slice of its whole decoded chunk, so 64 waiting leases held
    /// ~2.5 MiB of chunks per destination (`engine_bench`: 20 full trackers, 61 MiB
    /// against 9 without). Returns the
    /// leases it cannot keep, which the caller releases: all of them once the poller is
    /// gone; those whose id came before a restart noted since; and, when an id is already
    /// pending (a restart no check saw), that lease with every lease pending on `target`.
    pub fn add(&self, target: &str, items: Vec<Tracked>) -> Vec<Lease> {
        let mut inner = self.lock();
        if inner.closed {
            return items.into_iter().map(|t| t.lease).collect();
        }
        let mut stale = Vec::new();
        let now = Instant::now();
        let owned = target.to_string();
        for item in items {
            if item.epoch != inner.epoch {
                stale.push(item.lease);
                continue;
            }
            inner.outstanding.remove(&(owned.clone(), item.ack_id));
            if inner.is_pending(target, item.ack_id) {
                // One id twice: the server counted anew. Lanes hand over out of order, so
                // either could be the old one: both are sent again.
                stale.extend(inner.counts_anew(target));
                stale.push(item.lease);
                continue;
            }
            inner.last_serial += 1;
            let serial = inner.last_serial;
            inner.pending.push(Pending {
                ack_id: item.ack_id,
                serial,
                events: item.lease.len(),
                lease: item.lease.without_records(),
                dead_letter_markers: item.dead_letter_markers,
                target: owned.clone(),
                since: now,
            });
        }
        drop(inner);
        // notify_one keeps a permit when the poller is not waiting yet: no lost wake-up.
        self.added.notify_one();
        if !stale.is_empty() {
            self.room.notify_waiters();
        }
        stale
    }

    /// The current epoch (see [`AckTracker::issued`]).
    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Notes an ack id the moment `lane` reads it in `target`'s answer to a request sent in
    /// epoch `sent` (read before sending), before its lease is handed over, and returns
    /// the epoch the id belongs to (for [`Tracked::epoch`]). An id not above the lane's
    /// previous one from `target`, or equal to one issued and not yet acked, means the
    /// server counts anew: the leases waiting on it are returned for release (sent again,
    /// never acked by a new id's answer). An answer to a request sent before the last
    /// restart noted may come from either server: its id keeps the old epoch (sent again
    /// at hand-over) and is not counted.
    pub fn issued(&self, target: &str, lane: usize, ack_id: u64, sent: u64) -> (Vec<Lease>, u64) {
        let mut inner = self.lock();
        if sent != inner.epoch {
            return (Vec::new(), sent);
        }
        let owned = target.to_string();
        let lane_key = (owned.clone(), lane);
        let id_key = (owned, ack_id);
        let previous = inner.last_id_by_lane.get(&lane_key).copied();
        let reused = inner.is_pending(target, ack_id) || inner.outstanding.contains(&id_key);
        let stale = if reused || previous.is_some_and(|previous| ack_id <= previous) {
            inner.counts_anew(target)
        } else {
            Vec::new()
        };
        inner.last_id_by_lane.insert(lane_key, ack_id);
        inner.outstanding.insert(id_key);
        let epoch = inner.epoch;
        drop(inner);
        if !stale.is_empty() {
            self.room.notify_waiters();
        }
        (stale, epoch)
    }

    /// True when `cap` leases are pending or being acked: workers wait for room.
    fn full(&self) -> bool {
        self.lock().held() >= self.cap.load(Ordering::Relaxed)
    }

    /// Waits until fewer than `cap` leases are pending or being acked (or shutdown).
    pub async fn wait_for_room(&self, shutdown: &mut watch::Receiver<bool>) {
        loop {
            let notified = self.room.notified();
            if !self.full() || *shutdown.borrow() {
                return;
            }
            tokio::select! {
                _ = notified => {}
                // A missed ping costs at most this long.
                _ = tokio::time::sleep(IDLE_CHECK) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// The halt a poll decided for `adapter`, if any (it lasts until the adapter changes).
    pub fn halt_for(&self, adapter: &Arc<dyn SiemAdapter>) -> Option<Halt> {
        match &self.lock().halt {
            Some((a, halt)) if Arc::ptr_eq(a, adapter) => Some(halt.clone()),
            _ => None,
        }
    }

    /// Whether a worker must pause because acks of confirmed leases fail in the queue. It
    /// pauses once for each round of failed acks (`paused_for`: [`AckTracker::failed_rounds`]
    /// when it last woke from such a pause), and after that whenever a lease is here (being
    /// acked, or waiting for its ack id: its ack will tell whether acks work again);
    /// otherwise its next request goes and tells.
    pub fn ack_failure(&self, paused_for: u64) -> bool {
        let inner = self.lock();
        inner.acks_failing && (inner.held() > 0 || inner.failed_rounds != paused_for)
    }

    /// Rounds of acks that had one fail, so far.
    pub fn failed_rounds(&self) -> u64 {
        self.lock().failed_rounds
    }

    /// Runs `then` (a change of the destination's state) only if acks of confirmed leases
    /// fail (`failing`) or work (`!failing`), under this tracker's lock like the poller's
    /// own state changes, so a failing round cannot slip between the check and the change
    /// (while they fail, a request the SIEM accepted says nothing yet of whether the
    /// destination is well). True when `then` ran.
    pub fn if_acks(&self, failing: bool, then: impl FnOnce()) -> bool {
        let inner = self.lock();
        if inner.acks_failing != failing {
            return false;
        }
        then();
        drop(inner);
        true
    }

    /// Changes each time acks work again after they failed: subscribe before calling
    /// [`AckTracker::ack_failure`], and a pause for it can end at once then.
    pub fn recoveries(&self) -> watch::Receiver<u64> {
        self.recoveries.subscribe()
    }

    /// Acks no longer fail (they worked, or no poller acks here any more).
    fn recovered(&self) {
        self.recoveries.send_modify(|n| *n += 1);
    }

    /// Takes the leases confirmed by a poll out of `pending` to be acked; they count
    /// against `cap` until [`AckTracker::acked`].
    fn take_for_ack(&self, pick: impl FnMut(&Pending) -> bool) -> Vec<Pending> {
        let mut inner = self.lock();
        let taken = inner.take(pick);
        inner.acking += taken.len();
        taken
    }

    /// `count` leases from [`AckTracker::take_for_ack`] were acked in the queue (all of
    /// them if `all_held`). `state` gets what changed (`Some(true)`: acks fail now,
    /// `Some(false)`: they work again), under the lock.
    fn acked(&self, count: usize, all_held: bool, state: impl FnOnce(Option<bool>)) {
        let mut inner = self.lock();
        inner.acking -= count;
        let recovered = inner.acks_failing && all_held;
        inner.acks_failing = !all_held;
        if !all_held {
            inner.failed_rounds += 1;
        }
        state((!all_held || recovered).then_some(!all_held));
        drop(inner);
        if recovered {
            self.recovered();
        }
        self.room.notify_waiters();
    }

    /// Removes the entries `pick` selects, under the lock.
    fn take(&self, pick: impl FnMut(&Pending) -> bool) -> Vec<Pending> {
        self.lock().take(pick)
    }
}

mod poller;
pub(crate) use poller::{ack_failure_state, acks_work_again, release_leases, run};

#[cfg(test)]
mod tests;
