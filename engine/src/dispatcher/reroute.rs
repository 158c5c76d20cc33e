//! Re-routing: moving unrouted events to destinations registered after them.

use std::collections::{BTreeMap, HashMap, HashSet};

use raxe_adapters::event::ScanEvent;

use super::{lock, SiemDispatcher};
use crate::error::EngineError;
use crate::routing::{CustomerKey, RouteTable};

impl SiemDispatcher {
    /// Moves unrouted events that now have a destination, each to the destination's queue
    /// in its order; the events that stay keep their places. Runs under the routes write
    /// lock, so no dispatch can slip an event into the unrouted queue meanwhile.
    pub(super) fn reroute_unrouted(&self, routes: &RouteTable) -> Result<(), EngineError> {
        let mut remaining = self.unrouted.stats().len;
        // Records that stay are held (by lease id only: a large backlog is not kept in
        // memory) until the scan ends: released at once, they would be leased again at the
        // head instead of the scan moving on.
        let mut untouched = Vec::new();
        let mut waiting = HashSet::new();
        let result = self.reroute_scan(routes, &mut remaining, &mut untouched, &mut waiting);
        for lease in untouched {
            self.unrouted.release(lease);
        }
        // Known only after a full scan; a failed one leaves the next registration to scan.
        *lock(&self.unrouted_customers) = result.is_ok().then_some(waiting);
        result
    }

    /// Leases the unrouted queue through to its end, moving the records that now have a
    /// destination; `waiting` collects the customers of those that stay.
    fn reroute_scan(
        &self,
        routes: &RouteTable,
        remaining: &mut u64,
        untouched: &mut Vec<raxe_storage::Lease>,
        waiting: &mut HashSet<CustomerKey>,
    ) -> Result<(), EngineError> {
        // Queue names by customer, built once per customer for the whole scan.
        let mut queues: HashMap<CustomerKey, Vec<String>> = HashMap::new();
        while *remaining > 0 {
            let Some(lease) = self.unrouted.lease(1_000, 8 << 20)? else {
                break;
            };
            *remaining = remaining.saturating_sub(lease.len() as u64);
            let mut moves: Vec<bool> = Vec::with_capacity(lease.len());
            let appended = {
                let mut buckets: BTreeMap<String, Vec<&[u8]>> = BTreeMap::new();
                for record in &lease.records {
                    // An undecodable record has no customer: it stays.
                    let key = ScanEvent::from_queue_bytes(&record.data).ok().map(|event| {
                        CustomerKey::of_event(event.mssp_id.as_deref(), &event.customer_id)
                    });
                    let Some(key) = key else {
                        moves.push(false);
                        continue;
                    };
                    if !queues.contains_key(&key) {
                        queues.insert(key.clone(), routes.queues(&key));
                    }
                    let targets = &queues[&key];
                    moves.push(!targets.is_empty());
                    if targets.is_empty() {
                        waiting.insert(key);
                    }
                    for name in targets {
                        // A name is copied once per lease, not once per record.
                        match buckets.get_mut(name.as_str()) {
                            Some(bucket) => bucket.push(&record.data),
                            None => {
                                buckets.insert(name.clone(), vec![&record.data]);
                            }
                        }
                    }
                }
                if buckets.is_empty() {
                    None
                } else {
                    let parts: Vec<(&str, &[&[u8]])> = buckets
                        .iter()
                        .map(|(name, records)| (name.as_str(), records.as_slice()))
                        .collect();
                    // Durable in the new queues before leaving the unrouted one: a crash
                    // repeats, never loses.
                    Some(self.store.append_group(&parts, None))
                }
            };
            match appended {
                None => untouched.push(lease.without_records()),
                Some(Err(e)) => {
                    // Back to its place with the others, not left leased until a restart.
                    untouched.push(lease.without_records());
                    return Err(e.into());
                }
                Some(Ok(_)) => {
                    let moved = moves.iter().filter(|m| **m).count();
                    let (gone, stays) = self.unrouted.split_lease_by(lease, &moves);
                    untouched.push(stays.without_records());
                    self.unrouted.ack(gone)?;
                    tracing::info!(
                        events = moved,
                        "re-routed events that were waiting for a destination"
                    );
                }
            }
        }
        Ok(())
    }
}
