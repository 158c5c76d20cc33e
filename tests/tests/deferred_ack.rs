//! The ack of a delivered batch: the next request may leave once the ack is durable (in
//! the queue's ack journal), not when the queue's bookkeeping after it is done. A store
//! wrapper (acking through the trait's default `ack_without_waiting`: the whole ack on the
//! storage pool, beside the next batch) slows both halves of every such ack and looks at
//! what the real HEC receiver had accepted at each point. The sled store itself acks on
//! the lane and hands back only what waits for the disk.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use raxe_engine::{AuditLog, DestinationOptions, SiemDispatcher};
use raxe_storage::{Lease, Queue, QueueError, SledStore, StoreOptions};
use raxe_tests::hec::HecReceiver;
use support::hooked_store::{AckHook, HookedStore};
use support::*;

const WAIT: Duration = Duration::from_secs(30);
/// Before the inner ack: nothing is durable yet, and the next batch must wait.
const BEFORE_DURABLE: Duration = Duration::from_millis(50);
/// After the inner ack returned: the bookkeeping a batch need not wait for.
const AFTER_DURABLE: Duration = Duration::from_millis(300);

/// What the receiver had accepted around one ack.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// Records acked so far, this ack's included.
    acked: usize,
    at_durable: usize,
    at_return: usize,
}

struct Probe {
    received: Box<dyn Fn() -> usize + Send + Sync>,
    acked: Mutex<usize>,
    seen: Mutex<Vec<Seen>>,
}

impl AckHook for Probe {
    /// Slow on both sides of the real ack; records what the receiver had at each point.
    fn ack_notifying(
        &self,
        inner: &dyn Queue,
        lease: Lease,
        durable: &mut dyn FnMut(),
    ) -> Result<(), QueueError> {
        let records = lease.len();
        std::thread::sleep(BEFORE_DURABLE);
        let mut at_durable = None;
        inner.ack_notifying(lease, &mut || {
            at_durable = Some((self.received)());
            durable();
        })?;
        std::thread::sleep(AFTER_DURABLE);
        let mut acked = self.acked.lock().unwrap();
        *acked += records;
        self.seen.lock().unwrap().push(Seen {
            acked: *acked,
            at_durable: at_durable.expect("a successful ack said it was durable"),
            at_return: (self.received)(),
        });
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_batch_leaves_once_the_previous_ack_is_durable_and_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let hec = Arc::new(HecReceiver::start("t").await);
    let receiver = hec.clone();
    let probe = Arc::new(Probe {
        received: Box::new(move || receiver.accepted_count()),
        acked: Mutex::new(0),
        seen: Mutex::new(Vec::new()),
    });
    let sled = Arc::new(SledStore::open_with(dir.path(), StoreOptions::default()).unwrap());
    let store = Arc::new(HookedStore {
        inner: sled,
        hook: probe.clone(),
    });
    let dispatcher = Arc::new(
        SiemDispatcher::with_policy(store, Arc::new(AuditLog::in_memory()), fast_policy()).unwrap(),
    );
    let mut config = splunk_config(&hec.url(), "t");
    config.batch_size = 100;
    let adapter = raxe_adapters::create_siem_adapter(config).unwrap();
    dispatcher
        .register_destination("d", adapter.into(), None, DestinationOptions::default())
        .unwrap();
    let batch = events("m", "c", 0..600);
    dispatcher
        .dispatch_batch_async(batch.clone())
        .await
        .unwrap();
    dispatcher.start().unwrap();

    assert!(dispatcher.drain(WAIT).await);
    assert_eq!(as_set(&hec.accepted()), ids(&batch));
    assert_eq!(hec.accepted_count(), 600, "no duplicates without faults");
    dispatcher.shutdown(Duration::from_secs(5)).await;

    let seen = probe.seen.lock().unwrap().clone();
    assert_eq!(seen.last().map(|s| s.acked), Some(600), "{seen:?}");
    // Safety: no request left before the ack of the batch before it was durable.
    for s in &seen {
        assert_eq!(
            s.at_durable, s.acked,
            "a batch left before an ack was durable: {seen:?}"
        );
    }
    // Speed: the next batch did not wait for the ack's bookkeeping after that point.
    let overlapped = seen.iter().filter(|s| s.at_return > s.acked).count();
    assert!(
        overlapped * 2 >= seen.len() - 1,
        "the next batch waited for whole acks: {seen:?}"
    );
}

/// A lane acks on its own task as far as that waits for no flush and runs the rest the
/// sled store hands back (here the switch to a new ack journal file, due every few acks;
/// that it is handed back is `ack_without_waiting`'s unit test, and that a rest overlaps
/// the next batch is the test above). Every event arrives once, and the journal really
/// rotated: dropping the rest would leave it at its first file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_that_fill_the_journal_rotate_it_off_the_lane() {
    let dir = tempfile::tempdir().unwrap();
    let hec = HecReceiver::start("t").await;
    let options = StoreOptions {
        // A journal record is 41 bytes: a new file every fifth ack.
        ack_journal_bytes: 200,
        ..StoreOptions::default()
    };
    let store = Arc::new(SledStore::open_with(dir.path(), options).unwrap());
    let dispatcher = Arc::new(
        SiemDispatcher::with_policy(store, Arc::new(AuditLog::in_memory()), fast_policy()).unwrap(),
    );
    let mut config = splunk_config(&hec.url(), "t");
    config.batch_size = 100;
    let adapter = raxe_adapters::create_siem_adapter(config).unwrap();
    dispatcher
        .register_destination("d", adapter.into(), None, DestinationOptions::default())
        .unwrap();
    let batch = events("m", "c", 0..3000);
    dispatcher
        .dispatch_batch_async(batch.clone())
        .await
        .unwrap();
    dispatcher.start().unwrap();

    assert!(dispatcher.drain(WAIT).await);
    assert_eq!(as_set(&hec.accepted()), ids(&batch));
    assert_eq!(hec.accepted_count(), 3000, "no duplicates without faults");
    dispatcher.shutdown(Duration::from_secs(5)).await;

    let journals: Vec<u64> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            let hex = name.strip_prefix("acks-")?.strip_suffix(".log")?;
            Some(u64::from_str_radix(hex, 16).unwrap())
        })
        .collect();
    assert_eq!(
        journals.len(),
        1,
        "retired journal files are deleted: {journals:?}"
    );
    assert!(
        journals[0] >= 4,
        "30 acks rotated the journal: {journals:?}"
    );
}
