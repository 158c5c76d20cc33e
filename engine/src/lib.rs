//! raxe-engine: routing, delivery workers, retries, dead letters and audit. It wires
//! `raxe-storage` queues to `raxe-adapters` destinations.
//!
//! Data flows one way: `dispatch` → route → durable append to each destination's queue →
//! that destination's worker leases a batch → adapter encodes and sends → the SIEM answers
//! → the worker acks, retries, or dead-letters.
//!
//! Invariants:
//! - `dispatch*` returns only once every event is durable in every matching queue (one
//!   group commit per batch). An event with no destination is kept in the `unrouted` queue
//!   and moved when a destination for its customer appears, in order (the events that
//!   stay keep their places); nothing is dropped.
//! - An event leaves a queue only after the SIEM accepted it or it is durably in the
//!   destination's dead-letter queue. A crash therefore repeats at most the leases in
//!   flight (at-least-once), never loses.
//! - Destinations are isolated: each has its own queue, workers, connection and backoff.
//!   A slow, failing or stopped SIEM never delays another destination.
//! - Retries never give up: after `retry_count` quick retries a destination is degraded
//!   and retried on a capped schedule. Auth and configuration failures stop it, keep its
//!   events, and say so until the configuration changes.
//! - A stop finishes the requests in flight and keeps the rest queued. With indexer acks
//!   (Splunk `useACK`) it also polls, for up to most of its deadline, so what the SIEM
//!   already indexed is not sent again by the next start.
//! - Storage calls that wait for the disk (appends, intake, flushes) run on
//!   [`storage_pool`] (a bounded pool of threads of their own), never on the async
//!   workers; leases and acks, which wait for no flush, run on the delivery lane itself.
//!
//! Queue names on disk: `dest:<id>`, `dlq:<id>` and `unrouted` (see [`queue_names`]).

pub mod audit;
pub mod backoff;
pub mod dead_letter;
mod delivery;
mod destination;
mod dispatcher;
pub mod error;
mod indexer_ack;
pub mod metrics;
pub mod queue_names;
pub mod routing;
pub mod stats;
pub mod storage_pool;
mod worker;

pub use audit::{AuditLog, AuditStats, Counters};
pub use backoff::BackoffPolicy;
pub use dead_letter::DeadLetter;
pub use destination::{DestinationOptions, DestinationState};
pub use dispatcher::{DispatchReport, RemovePolicy, SiemDispatcher};
pub use error::EngineError;
pub use routing::{CustomerKey, DestinationId};
pub use stats::{DestinationReport, EngineStats, KeptQueue};
