//! Unit tests of `AckTracker`: restart detection across lanes, epochs and hand-overs;
//! what failed acks in the queue hold back.

use super::*;

fn lease(id: u64) -> Lease {
    Lease {
        id,
        records: Vec::new(),
    }
}

fn tracked(ack_id: u64, epoch: u64) -> Tracked {
    Tracked {
        ack_id,
        epoch,
        lease: lease(ack_id + 1_000),
        dead_letter_markers: Vec::new(),
    }
}

fn ids(leases: &[Lease]) -> Vec<u64> {
    leases.iter().map(|l| l.id - 1_000).collect()
}

/// `issued` for a request sent in the current epoch: the released ids and the id's epoch.
fn issue(acks: &AckTracker, target: &str, lane: usize, ack_id: u64) -> (Vec<u64>, u64) {
    let (stale, epoch) = acks.issued(target, lane, ack_id, acks.epoch());
    (ids(&stale), epoch)
}

#[test]
fn lanes_may_report_ids_out_of_order() {
    let acks = AckTracker::default();
    let (stale, e0) = issue(&acks, "t", 0, 10);
    assert!(stale.is_empty());
    let (stale, e1) = issue(&acks, "t", 1, 9);
    assert!(stale.is_empty());
    assert_eq!(e0, e1);
    assert!(acks.add("t", vec![tracked(9, e1)]).is_empty());
    assert!(acks.add("t", vec![tracked(10, e0)]).is_empty());
    assert_eq!(acks.pending(), 2);
}

#[test]
fn a_lane_seeing_a_lower_id_sends_everything_waiting_again() {
    let acks = AckTracker::default();
    let (_, epoch) = issue(&acks, "t", 0, 5);
    let (_, epoch6) = issue(&acks, "t", 1, 6);
    assert!(acks.add("t", vec![tracked(5, epoch)]).is_empty());
    // Lane 1 still holds 6 (and gets 7) when lane 0 sees the restart.
    let (_, epoch7) = issue(&acks, "t", 1, 7);
    let (stale, after) = issue(&acks, "t", 0, 0);
    assert_eq!(stale, [5]);
    assert_ne!(after, epoch);
    // Lane 1's requests from before the restart come back at its hand-over.
    let refused = acks.add("t", vec![tracked(6, epoch6), tracked(7, epoch7)]);
    assert_eq!(ids(&refused), [6, 7]);
    assert!(acks.add("t", vec![tracked(0, after)]).is_empty());
    // Lane 1's first id of the new count is no second restart, though below its old 7.
    let (stale, still) = issue(&acks, "t", 1, 1);
    assert!(stale.is_empty(), "{stale:?}");
    assert_eq!(still, after);
    assert!(acks.add("t", vec![tracked(1, still)]).is_empty());
    assert_eq!(acks.pending(), 2);
}

#[test]
fn an_id_another_lane_has_not_handed_over_yet_is_a_restart() {
    let acks = AckTracker::default();
    // Lane 0 got 10 and is still sending the rest of its lease.
    let (_, old) = issue(&acks, "t", 0, 10);
    // The server restarts; a lane with no earlier id gets the new 10.
    let (_, new) = issue(&acks, "t", 1, 10);
    assert_ne!(new, old, "a restart");
    assert_eq!(ids(&acks.add("t", vec![tracked(10, old)])), [10]);
    assert!(acks.add("t", vec![tracked(10, new)]).is_empty());
    assert_eq!(acks.pending(), 1);
}

#[test]
fn an_id_issued_while_the_same_id_waits_is_a_restart() {
    let acks = AckTracker::default();
    let (_, epoch) = issue(&acks, "t", 0, 3);
    assert!(acks.add("t", vec![tracked(3, epoch)]).is_empty());
    issue(&acks, "t", 0, 4);
    // Above this lane's last id, but 3 still waits: the server counts anew.
    let (stale, _) = issue(&acks, "t", 1, 3);
    assert_eq!(stale, [3]);
}

#[test]
fn another_servers_ids_are_another_count() {
    let acks = AckTracker::default();
    let (_, epoch) = issue(&acks, "u", 0, 3);
    assert!(acks.add("u", vec![tracked(3, epoch)]).is_empty());
    let (stale, now) = issue(&acks, "t", 0, 3);
    assert!(stale.is_empty());
    assert_eq!(now, epoch, "u's waiting 3 is no restart of t");
    assert!(acks.add("t", vec![tracked(3, now)]).is_empty());
    assert_eq!(acks.pending(), 2);
}

#[test]
fn an_answer_to_a_request_sent_before_a_restart_is_sent_again() {
    let acks = AckTracker::default();
    issue(&acks, "t", 0, 49);
    issue(&acks, "t", 1, 48);
    // Lane 0 sends; meanwhile lane 1 sees the restart.
    let sent = acks.epoch();
    let (_, after) = issue(&acks, "t", 1, 0);
    assert_ne!(after, sent);
    // The old server's answer (or the new one's: unknown) is no second restart and is
    // not counted; at hand-over it is refused, so it is sent again.
    let (stale, epoch) = acks.issued("t", 0, 50, sent);
    assert!(stale.is_empty());
    assert_eq!(epoch, sent);
    assert_eq!(ids(&acks.add("t", vec![tracked(50, epoch)])), [50]);
    // Lane 0's next answer is judged on the new count alone.
    let (stale, now) = issue(&acks, "t", 0, 1);
    assert!(stale.is_empty());
    assert_eq!(now, after);
}

#[test]
fn one_id_handed_over_twice_sends_both_again() {
    let acks = AckTracker::default();
    let (_, epoch) = issue(&acks, "t", 0, 8);
    assert!(acks.add("t", vec![tracked(8, epoch)]).is_empty());
    let refused = acks.add("t", vec![tracked(8, epoch)]);
    assert_eq!(ids(&refused), [8, 8]);
    assert_eq!(acks.pending(), 0);
}

#[test]
fn failed_acks_pause_workers_once_a_round_then_while_a_lease_tests_them() {
    let acks = AckTracker::new(2);
    let hand_over = |ack_id: u64| {
        let (_, epoch) = issue(&acks, "t", 0, ack_id);
        assert!(acks.add("t", vec![tracked(ack_id, epoch)]).is_empty());
    };
    // Acks `taken` with this outcome; what the state should turn to.
    let acked = |taken: Vec<Pending>, all_held: bool| {
        let mut change = None;
        acks.acked(taken.len(), all_held, |c| change = c);
        change
    };
    let recoveries = acks.recoveries();
    hand_over(1);
    hand_over(2);
    // Leases being acked still take room, so a worker waiting for it sees how they went.
    let taken = acks.take_for_ack(|_| true);
    assert_eq!(acks.pending(), 0);
    assert_eq!(acks.lock().held(), 2);
    assert!(!acks.ack_failure(0));
    assert_eq!(acked(taken, false), Some(true), "acks fail now");
    // Every worker pauses for the round (nothing is held, but none paused for it yet)...
    assert!(acks.ack_failure(0));
    assert!(!acks.if_acks(false, || panic!("not well while acks fail")));
    let round = acks.failed_rounds();
    // ...then one request goes, and while it is held the others wait.
    assert!(!acks.ack_failure(round));
    hand_over(3);
    assert!(acks.ack_failure(round));
    // Its ack fails too: a new round, another pause.
    let taken = acks.take_for_ack(|_| true);
    assert_eq!(acked(taken, false), Some(true));
    assert!(acks.ack_failure(round));
    let round = acks.failed_rounds();
    assert!(!acks.ack_failure(round));
    // An ack that works ends it, and tells paused workers.
    hand_over(4);
    let taken = acks.take_for_ack(|_| true);
    assert!(!recoveries.has_changed().unwrap());
    assert_eq!(acked(taken, true), Some(false), "acks work again");
    assert!(recoveries.has_changed().unwrap());
    assert!(acks.if_acks(false, || {}));
    assert!(!acks.if_acks(true, || panic!("acks work")));
    hand_over(5);
    assert!(!acks.ack_failure(0));
    let taken = acks.take_for_ack(|_| true);
    assert_eq!(acked(taken, true), None, "nothing changed");
}

/// A request handed over before the poller first looks (a hand-over racing its start) is
/// first polled one interval later, like any other: its id cannot be indexed yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_over_before_the_poller_starts_waits_one_interval_for_its_poll() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use raxe_adapters::config::{SiemConfig, SiemOptions, SplunkOptions};

    use crate::{AuditLog, DestinationOptions, SiemDispatcher};

    // Counts connections; answers none (a poll is seen the moment it connects).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let polls = Arc::new(AtomicUsize::new(0));
    let seen = polls.clone();
    std::thread::spawn(move || {
        let mut open = Vec::new();
        for stream in listener.incoming() {
            seen.fetch_add(1, Ordering::SeqCst);
            open.push(stream);
        }
    });

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(raxe_storage::SledStore::open(dir.path()).unwrap());
    let dispatcher = SiemDispatcher::new(store, Arc::new(AuditLog::in_memory())).unwrap();
    let config = SiemConfig::with_options(
        &format!("http://{addr}"),
        "t",
        SiemOptions::Splunk(SplunkOptions {
            ack: true,
            channel: Some(raxe_adapters::splunk::ack::new_channel()),
            ack_interval_seconds: 3,
            ..Default::default()
        }),
    )
    .unwrap();
    let adapter: Arc<dyn SiemAdapter> = raxe_adapters::create_siem_adapter(config).unwrap().into();
    let target = adapter.indexer_ack().unwrap().ack_target();
    dispatcher
        .register_destination("d", adapter, None, DestinationOptions::default())
        .unwrap();
    let event = raxe_adapters::event::ScanEvent::new("c");
    dispatcher.dispatch(&event).unwrap();
    // The one event is sent and accepted (id 0), as far as the tracker knows: the worker
    // finds the queue empty.
    let dest = dispatcher.destination("d").unwrap();
    let lease = dest.queue.lease(10, usize::MAX).unwrap().unwrap();
    let epoch = dest.acks.epoch();
    let handed = Tracked {
        ack_id: 0,
        epoch,
        lease,
        dead_letter_markers: Vec::new(),
    };
    assert!(dest.acks.add(&target, vec![handed]).is_empty());

    dispatcher.start().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        polls.load(Ordering::SeqCst),
        0,
        "not polled before its interval"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while polls.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        polls.load(Ordering::SeqCst),
        1,
        "polled once the interval passed"
    );
    dispatcher
        .shutdown_releasing_acks(Duration::from_secs(2))
        .await;
}
