//! Which destinations an event goes to.
//!
//! A destination is either bound to one customer, keyed by (mssp_id, customer_id), or global
//! (it receives every event). Matching is exact: an event without an `mssp_id` matches only
//! destinations registered with an empty MSSP id, so one MSSP's customer can never receive
//! another MSSP's events because their customer ids happen to be equal.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

/// The customer a destination serves.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CustomerKey {
    pub mssp_id: String,
    pub customer_id: String,
}

impl CustomerKey {
    pub fn new(mssp_id: impl Into<String>, customer_id: impl Into<String>) -> Self {
        CustomerKey {
            mssp_id: mssp_id.into(),
            customer_id: customer_id.into(),
        }
    }

    /// The key an event routes by.
    pub fn of_event(mssp_id: Option<&str>, customer_id: &str) -> Self {
        CustomerKey::new(mssp_id.unwrap_or(""), customer_id)
    }
}

impl fmt::Display for CustomerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mssp_id.is_empty() {
            write!(f, "{}", self.customer_id)
        } else {
            write!(f, "{}/{}", self.mssp_id, self.customer_id)
        }
    }
}

/// Stable name of a destination; its queues are named after it, so it must not change
/// across restarts.
pub type DestinationId = String;

/// The routing table: customer destinations and global destinations.
#[derive(Debug, Default, Clone)]
pub struct RouteTable {
    by_customer: HashMap<CustomerKey, Vec<DestinationId>>,
    global: Vec<DestinationId>,
    scope: BTreeMap<DestinationId, Option<CustomerKey>>,
}

impl RouteTable {
    /// Adds (or moves) a destination. A destination routes while it exists, enabled or not:
    /// a disabled destination keeps accumulating events and delivers them when enabled.
    pub fn insert(&mut self, id: &str, customer: Option<CustomerKey>) {
        self.remove(id);
        match &customer {
            Some(key) => self
                .by_customer
                .entry(key.clone())
                .or_default()
                .push(id.to_string()),
            None => self.global.push(id.to_string()),
        }
        self.scope.insert(id.to_string(), customer);
    }

    pub fn remove(&mut self, id: &str) {
        let Some(customer) = self.scope.remove(id) else {
            return;
        };
        match customer {
            Some(key) => {
                if let Some(ids) = self.by_customer.get_mut(&key) {
                    ids.retain(|d| d != id);
                    if ids.is_empty() {
                        self.by_customer.remove(&key);
                    }
                }
            }
            None => self.global.retain(|d| d != id),
        }
    }

    /// Every destination an event of `key` goes to: the customer's own, then the global ones.
    /// Empty when nothing matches (the event is then kept as unrouted).
    pub fn route(&self, key: &CustomerKey) -> impl Iterator<Item = &DestinationId> {
        self.by_customer
            .get(key)
            .into_iter()
            .flatten()
            .chain(self.global.iter())
    }

    /// The names of the queues an event of `key` is appended to; empty when nothing
    /// matches.
    pub fn queues(&self, key: &CustomerKey) -> Vec<String> {
        self.route(key)
            .map(|id| crate::queue_names::destination(id))
            .collect()
    }

    /// True when the customer has a destination of its own.
    pub fn has_customer(&self, key: &CustomerKey) -> bool {
        self.by_customer.contains_key(key)
    }

    pub fn scope_of(&self, id: &str) -> Option<&Option<CustomerKey>> {
        self.scope.get(id)
    }

    pub fn destinations(&self) -> impl Iterator<Item = (&DestinationId, &Option<CustomerKey>)> {
        self.scope.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routed(table: &RouteTable, key: &CustomerKey) -> Vec<String> {
        table.route(key).cloned().collect()
    }

    #[test]
    fn customers_get_their_own_and_global_destinations_only() {
        let mut table = RouteTable::default();
        let a = CustomerKey::new("m1", "acme");
        let b = CustomerKey::new("m1", "globex");
        table.insert("acme-splunk", Some(a.clone()));
        table.insert("globex-sentinel", Some(b.clone()));
        table.insert("soc", None);
        assert_eq!(routed(&table, &a), ["acme-splunk", "soc"]);
        assert_eq!(routed(&table, &b), ["globex-sentinel", "soc"]);
        assert_eq!(routed(&table, &CustomerKey::new("m2", "acme")), ["soc"]);
    }

    #[test]
    fn mssp_must_match_exactly() {
        let mut table = RouteTable::default();
        table.insert("acme", Some(CustomerKey::new("m1", "acme")));
        assert!(routed(&table, &CustomerKey::of_event(None, "acme")).is_empty());
        assert!(routed(&table, &CustomerKey::of_event(Some("m2"), "acme")).is_empty());
        assert_eq!(
            routed(&table, &CustomerKey::of_event(Some("m1"), "acme")),
            ["acme"]
        );
    }

    #[test]
    fn reinserting_moves_a_destination_and_remove_forgets_it() {
        let mut table = RouteTable::default();
        let a = CustomerKey::new("m", "a");
        table.insert("d", Some(a.clone()));
        table.insert("d", None);
        assert_eq!(routed(&table, &a), ["d"]);
        assert!(!table.has_customer(&a));
        table.remove("d");
        assert!(routed(&table, &a).is_empty());
        assert_eq!(table.destinations().count(), 0);
    }
}
