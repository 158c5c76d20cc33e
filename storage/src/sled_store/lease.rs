//! Lease bookkeeping: ids, the ranges a lease holds, and splitting a lease in two.
//!
//! A lease lives in memory only (`QState::leases`, by id). A lease with no records is
//! never registered: there is nothing to ack or release, and registered it would stay.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use super::sled_queue::{LeaseInfo, QState, SledQueue};
use crate::queue::{Lease, Record, Seq};

static NEXT_LEASE_ID: AtomicU64 = AtomicU64::new(1);

/// A new lease id for `records`, registered unless there are none.
pub(super) fn register_lease(st: &mut QState, records: &[Record]) -> u64 {
    let id = NEXT_LEASE_ID.fetch_add(1, Ordering::Relaxed);
    if records.is_empty() {
        return id;
    }
    st.leases.insert(
        id,
        LeaseInfo {
            ranges: ranges_of(records),
            count: records.len() as u64,
            bytes: records.iter().map(|r| r.data.len() as u64).sum(),
        },
    );
    id
}

/// Registers a lease over `ranges` without reading them (for records that cannot be
/// read: see `salvage.rs`).
pub(super) fn lease_unread(st: &mut QState, ranges: Vec<Range<Seq>>, bytes: u64) -> u64 {
    let id = NEXT_LEASE_ID.fetch_add(1, Ordering::Relaxed);
    let count = ranges.iter().map(|r| r.end - r.start).sum();
    for r in &ranges {
        st.avail.remove(r.clone());
    }
    st.leases.insert(
        id,
        LeaseInfo {
            ranges,
            count,
            bytes,
        },
    );
    id
}

fn ranges_of(records: &[Record]) -> Vec<Range<Seq>> {
    let mut out: Vec<Range<Seq>> = Vec::new();
    for r in records {
        match out.last_mut() {
            Some(last) if last.end == r.seq => last.end += 1,
            _ => out.push(r.seq..r.seq + 1),
        }
    }
    out
}

impl SledQueue {
    /// [`crate::Queue::split_lease`].
    pub(super) fn split_lease_at(&self, lease: Lease, at: usize) -> (Lease, Lease) {
        if at >= lease.records.len() {
            // Nothing to split off (a batch settled whole): no lock, no new entry.
            let tail = Lease {
                id: NEXT_LEASE_ID.fetch_add(1, Ordering::Relaxed),
                records: Vec::new(),
            };
            return (lease, tail);
        }
        let mut records = lease.records;
        let tail = records.split_off(at);
        self.divide_lease(lease.id, records, tail)
    }

    /// [`crate::Queue::split_lease_by`].
    pub(super) fn split_lease_picked(&self, lease: Lease, picked: &[bool]) -> (Lease, Lease) {
        let (mut chosen, mut others) = (Vec::new(), Vec::new());
        for (i, record) in lease.records.into_iter().enumerate() {
            if picked.get(i).copied().unwrap_or(false) {
                chosen.push(record);
            } else {
                others.push(record);
            }
        }
        self.divide_lease(lease.id, chosen, others)
    }

    /// Replaces lease `id` by two leases over `a` and `b` (its records, in two parts).
    fn divide_lease(&self, id: u64, a: Vec<Record>, b: Vec<Record>) -> (Lease, Lease) {
        let mut st = self.lock();
        let (id_a, id_b) = if st.leases.remove(&id).is_some() {
            (register_lease(&mut st, &a), register_lease(&mut st, &b))
        } else {
            // Not ours or no longer outstanding: the parts stay unknown too.
            let first = NEXT_LEASE_ID.fetch_add(2, Ordering::Relaxed);
            (first, first + 1)
        };
        (
            Lease {
                id: id_a,
                records: a,
            },
            Lease {
                id: id_b,
                records: b,
            },
        )
    }
}
