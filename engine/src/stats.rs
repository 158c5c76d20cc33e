//! The figures `raxe stats` prints: audit counters joined with live queue state.

use raxe_storage::QueueStats;
use serde::Serialize;

use crate::audit::Counters;
use crate::destination::{DeliveryMarks, DestinationState};
use crate::routing::CustomerKey;

/// One destination's report.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationReport {
    pub id: String,
    pub customer: Option<CustomerKey>,
    pub siem_type: String,
    pub state: DestinationState,
    pub enabled: bool,
    #[serde(serialize_with = "queue_stats")]
    pub queue: QueueStats,
    #[serde(serialize_with = "queue_stats")]
    pub dead_letters: QueueStats,
    pub marks: DeliveryMarks,
    pub counters: Counters,
}

/// The queue of a destination that is no longer configured (removed, its queue kept)
/// and still holds events: nothing delivers them until it is configured again.
#[derive(Debug, Clone, Serialize)]
pub struct KeptQueue {
    pub id: String,
    #[serde(serialize_with = "queue_stats")]
    pub queue: QueueStats,
}

/// Everything at once.
#[derive(Debug, Clone, Serialize)]
pub struct EngineStats {
    pub total: Counters,
    pub destinations: Vec<DestinationReport>,
    #[serde(serialize_with = "queue_stats")]
    pub unrouted: QueueStats,
    /// Kept queues with events (see [`KeptQueue`]).
    pub kept_queues: Vec<KeptQueue>,
}

impl EngineStats {
    /// Events queued across every destination.
    pub fn queued(&self) -> u64 {
        self.destinations.iter().map(|d| d.queue.len).sum()
    }
}

fn queue_stats<S: serde::Serializer>(stats: &QueueStats, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    let mut st = s.serialize_struct("QueueStats", 3)?;
    st.serialize_field("events", &stats.len)?;
    st.serialize_field("bytes", &stats.bytes)?;
    st.serialize_field(
        "oldest_age_seconds",
        &stats.oldest_age.map(|a| a.as_secs_f64()),
    )?;
    st.end()
}
