//! A store whose queues are a real sled store's, except for how they ack: tests slow acks
//! down or make them fail, and watch what the engine does meanwhile. Every queue the store
//! opens is hooked, the dead-letter and unrouted queues too, and every ack goes through
//! the hook (`ack` as well).

use std::ops::Range;
use std::sync::Arc;

use raxe_storage::{AckProgress, Lease, Queue, QueueError, QueueStats, QueueStore, Seq, SledStore};

/// How a [`HookedQueue`] acks.
pub trait AckHook: Send + Sync + 'static {
    /// `Queue::ack_notifying`, given the real queue to ack in (or not).
    fn ack_notifying(
        &self,
        inner: &dyn Queue,
        lease: Lease,
        durable: &mut dyn FnMut(),
    ) -> Result<(), QueueError>;

    /// An error for `Queue::ack_without_waiting` to return at once, as when the sled
    /// store's own inline part fails; the lease goes back to the queue (the sled store
    /// instead keeps such records as acked in memory). `None` hands the whole ack back to
    /// run through [`AckHook::ack_notifying`] (the trait's default).
    fn inline_failure(&self) -> Option<QueueError> {
        None
    }
}

pub struct HookedStore<H> {
    pub inner: Arc<SledStore>,
    pub hook: Arc<H>,
}

pub struct HookedQueue<H> {
    inner: Arc<dyn Queue>,
    hook: Arc<H>,
}

impl<H: AckHook> Queue for HookedQueue<H> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn append(&self, records: &[&[u8]]) -> Result<Range<Seq>, QueueError> {
        self.inner.append(records)
    }
    fn lease(&self, max_records: usize, max_bytes: usize) -> Result<Option<Lease>, QueueError> {
        self.inner.lease(max_records, max_bytes)
    }
    fn split_lease(&self, lease: Lease, at: usize) -> (Lease, Lease) {
        self.inner.split_lease(lease, at)
    }
    fn split_lease_by(&self, lease: Lease, picked: &[bool]) -> (Lease, Lease) {
        self.inner.split_lease_by(lease, picked)
    }
    fn ack(&self, lease: Lease) -> Result<(), QueueError> {
        self.ack_notifying(lease, &mut || {})
    }
    fn ack_notifying(&self, lease: Lease, durable: &mut dyn FnMut()) -> Result<(), QueueError> {
        self.hook.ack_notifying(&*self.inner, lease, durable)
    }
    fn ack_without_waiting(self: Arc<Self>, lease: Lease) -> Result<AckProgress, QueueError> {
        if let Some(e) = self.hook.inline_failure() {
            self.inner.release(lease);
            return Err(e);
        }
        Ok(AckProgress::Pending {
            rest: Box::new(move |durable| self.ack_notifying(lease, durable)),
            counted: true,
        })
    }
    fn release(&self, lease: Lease) {
        self.inner.release(lease)
    }
    fn stats(&self) -> QueueStats {
        self.inner.stats()
    }
}

impl<H: AckHook> QueueStore for HookedStore<H> {
    fn open_queue(&self, name: &str) -> Result<Arc<dyn Queue>, QueueError> {
        Ok(Arc::new(HookedQueue {
            inner: self.inner.open_queue(name)?,
            hook: self.hook.clone(),
        }))
    }
    fn list_queues(&self) -> Result<Vec<String>, QueueError> {
        self.inner.list_queues()
    }
    fn drop_queue(&self, name: &str) -> Result<(), QueueError> {
        self.inner.drop_queue(name)
    }
    fn disk_bytes(&self) -> Result<u64, QueueError> {
        self.inner.disk_bytes()
    }
    fn append_group(
        &self,
        parts: &[(&str, &[&[u8]])],
        marker: Option<(&[u8], &[u8])>,
    ) -> Result<Vec<Range<Seq>>, QueueError> {
        self.inner.append_group(parts, marker)
    }
    fn append_group_with_markers(
        &self,
        parts: &[(&str, &[&[u8]])],
        markers: &[(&[u8], &[u8])],
    ) -> Result<Vec<Range<Seq>>, QueueError> {
        self.inner.append_group_with_markers(parts, markers)
    }
    fn marker(&self, key: &[u8]) -> Result<Option<Vec<u8>>, QueueError> {
        self.inner.marker(key)
    }
    fn remove_marker(&self, key: &[u8]) -> Result<bool, QueueError> {
        self.inner.remove_marker(key)
    }
}
