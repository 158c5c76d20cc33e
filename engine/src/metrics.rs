//! Prometheus metrics, through the official `prometheus-client` crate.
//!
//! Counters and the request-duration histogram are fed as things happen: every delivery
//! attempt and dead letter passes through [`crate::AuditLog::record`], which passes it on
//! here, and the dispatcher counts what it queues. Queue depths, ages and destination
//! states are read from [`EngineStats`] when a scrape renders the text, so they are never
//! stale and cost nothing between scrapes. Counters start at zero with the process, as
//! Prometheus expects (the audit log keeps the lifetime totals).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::audit::{AttemptOutcome, AuditKind, AuditRecord};
use crate::destination::DestinationState;
use crate::stats::EngineStats;

/// A label value from configuration or events (destination ids, customers): escaped as
/// the text format requires (`\\`, `\"`, `\n`), which prometheus-client leaves to the
/// caller. A customer id with a quote in it would otherwise break the whole page.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct LabelText(String);

impl From<&str> for LabelText {
    fn from(s: &str) -> Self {
        LabelText(s.to_string())
    }
}

impl From<String> for LabelText {
    fn from(s: String) -> Self {
        LabelText(s)
    }
}

impl EncodeLabelValue for LabelText {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        use std::fmt::Write;
        let mut rest = self.0.as_str();
        while let Some(at) = rest.find(['\\', '"', '\n']) {
            encoder.write_str(&rest[..at])?;
            encoder.write_str(match rest.as_bytes()[at] {
                b'\\' => "\\\\",
                b'"' => "\\\"",
                _ => "\\n",
            })?;
            rest = &rest[at + 1..];
        }
        encoder.write_str(rest)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestinationLabels {
    destination: LabelText,
    /// `mssp/customer`, or empty for a global destination.
    customer: LabelText,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    destination: LabelText,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestinationOnly {
    destination: LabelText,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    destination: LabelText,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IntakeLabels {
    /// `accepted` or `rejected`.
    result: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric the engine exports.
pub struct Metrics {
    registry: Registry,
    delivered: Family<DestinationLabels, Counter>,
    dead_lettered: Family<DestinationLabels, Counter>,
    retried: Family<DestinationLabels, Counter>,
    queued: Family<DestinationLabels, Counter>,
    attempts: Family<AttemptLabels, Counter>,
    request_bytes: Family<DestinationOnly, Counter>,
    duration: Family<DestinationOnly, Histogram>,
    intake: Family<IntakeLabels, Counter>,
    unrouted_total: Counter,
    queue_events: Family<DestinationLabels, Gauge>,
    queue_bytes: Family<DestinationLabels, Gauge>,
    oldest_age: Family<DestinationLabels, FloatGauge>,
    dead_letter_events: Family<DestinationLabels, Gauge>,
    state: Family<StateLabels, Gauge>,
    unrouted_events: Gauge,
    /// One scrape at a time: a second one clearing the gauges while the first encodes
    /// them would leave series out of the first's page.
    rendering: std::sync::Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Request latencies from 5 ms to ~40 s.
fn duration_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.005, 2.0, 14)
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("raxe");
        let m = Metrics {
            delivered: Family::default(),
            dead_lettered: Family::default(),
            retried: Family::default(),
            queued: Family::default(),
            attempts: Family::default(),
            request_bytes: Family::default(),
            duration: Family::new_with_constructor(|| Histogram::new(duration_buckets())),
            intake: Family::default(),
            unrouted_total: Counter::default(),
            queue_events: Family::default(),
            queue_bytes: Family::default(),
            oldest_age: Family::default(),
            dead_letter_events: Family::default(),
            state: Family::default(),
            unrouted_events: Gauge::default(),
            rendering: std::sync::Mutex::new(()),
            registry: Registry::default(),
        };
        registry.register(
            "events_delivered",
            "Events the SIEM accepted",
            m.delivered.clone(),
        );
        registry.register(
            "events_dead_lettered",
            "Events moved to the dead-letter queue (refused by the SIEM)",
            m.dead_lettered.clone(),
        );
        registry.register(
            "events_retried",
            "Events in requests that failed and will be sent again",
            m.retried.clone(),
        );
        registry.register(
            "events_queued",
            "Event copies made durable in a destination's queue",
            m.queued.clone(),
        );
        registry.register(
            "events_received",
            "Input events read (spool files and ingest), by whether they parsed",
            m.intake.clone(),
        );
        registry.register(
            "events_unrouted",
            "Accepted events no destination matched (kept in the unrouted queue)",
            m.unrouted_total.clone(),
        );
        registry.register(
            "delivery_attempts",
            "Requests sent to SIEMs, by outcome",
            m.attempts.clone(),
        );
        registry.register_with_unit(
            "request",
            "Request bodies sent to SIEMs",
            Unit::Bytes,
            m.request_bytes.clone(),
        );
        registry.register_with_unit(
            "request_duration",
            "Time from sending a request to classifying the SIEM's answer",
            Unit::Seconds,
            m.duration.clone(),
        );
        registry.register(
            "queue_events",
            "Events waiting in a destination's queue",
            m.queue_events.clone(),
        );
        registry.register_with_unit(
            "queue",
            "Payload bytes waiting in a destination's queue",
            Unit::Bytes,
            m.queue_bytes.clone(),
        );
        registry.register_with_unit(
            "queue_oldest_event_age",
            "Age of the oldest event waiting in a destination's queue (0 when empty)",
            Unit::Seconds,
            m.oldest_age.clone(),
        );
        registry.register(
            "dead_letter_events",
            "Events in a destination's dead-letter queue",
            m.dead_letter_events.clone(),
        );
        registry.register(
            "destination_state",
            "1 for the state a destination is in (ok, retrying, degraded, auth_failed, misconfigured, disabled)",
            m.state.clone(),
        );
        registry.register(
            "unrouted_queue_events",
            "Events waiting for a destination to be configured",
            m.unrouted_events.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts one audit record (called by the audit log).
    pub(crate) fn observe(&self, record: &AuditRecord) {
        let labels = DestinationLabels {
            destination: record.destination.as_str().into(),
            customer: record.customer.clone().unwrap_or_default().into(),
        };
        match &record.kind {
            AuditKind::Attempt {
                events,
                bytes,
                outcome,
                latency_ms,
                ..
            } => {
                let destination = DestinationOnly {
                    destination: record.destination.as_str().into(),
                };
                self.attempts
                    .get_or_create(&AttemptLabels {
                        destination: record.destination.as_str().into(),
                        outcome: outcome_label(*outcome).into(),
                    })
                    .inc();
                self.request_bytes
                    .get_or_create(&destination)
                    .inc_by(*bytes as u64);
                self.duration
                    .get_or_create(&destination)
                    .observe(*latency_ms as f64 / 1000.0);
                match outcome {
                    AttemptOutcome::Delivered => {
                        self.delivered.get_or_create(&labels).inc_by(*events as u64);
                    }
                    AttemptOutcome::Retry => {
                        self.retried.get_or_create(&labels).inc_by(*events as u64);
                    }
                    _ => {}
                }
            }
            AuditKind::DeadLettered { events, .. } => {
                self.dead_lettered
                    .get_or_create(&labels)
                    .inc_by(*events as u64);
            }
            AuditKind::Indexed { events } => {
                self.delivered.get_or_create(&labels).inc_by(*events as u64);
            }
        }
    }

    /// Counts events made durable in a destination's queue.
    pub(crate) fn queued(&self, destination: &str, customer: Option<String>, events: usize) {
        self.queued
            .get_or_create(&DestinationLabels {
                destination: destination.into(),
                customer: customer.unwrap_or_default().into(),
            })
            .inc_by(events as u64);
    }

    pub(crate) fn unrouted(&self, events: usize) {
        self.unrouted_total.inc_by(events as u64);
    }

    /// Counts input lines: those that parsed into events and those rejected.
    pub fn intake(&self, accepted: usize, rejected: usize) {
        for (result, n) in [("accepted", accepted), ("rejected", rejected)] {
            self.intake
                .get_or_create(&IntakeLabels {
                    result: result.into(),
                })
                .inc_by(n as u64);
        }
    }

    /// The Prometheus text exposition of everything, with gauges read from `stats`.
    pub fn render(&self, stats: &EngineStats) -> String {
        let _one_scrape = self.rendering.lock().unwrap_or_else(|e| e.into_inner());
        // Destinations removed since the last scrape must disappear from the gauges.
        self.queue_events.clear();
        self.queue_bytes.clear();
        self.oldest_age.clear();
        self.dead_letter_events.clear();
        self.state.clear();
        for d in &stats.destinations {
            let labels = DestinationLabels {
                destination: d.id.as_str().into(),
                customer: d
                    .customer
                    .as_ref()
                    .map(|c| c.to_string())
                    .unwrap_or_default()
                    .into(),
            };
            self.queue_events
                .get_or_create(&labels)
                .set(d.queue.len as i64);
            self.queue_bytes
                .get_or_create(&labels)
                .set(d.queue.bytes as i64);
            self.oldest_age
                .get_or_create(&labels)
                .set(d.queue.oldest_age.map_or(0.0, |a| a.as_secs_f64()));
            self.dead_letter_events
                .get_or_create(&labels)
                .set(d.dead_letters.len as i64);
            self.state
                .get_or_create(&StateLabels {
                    destination: d.id.as_str().into(),
                    state: state_label(&d.state).into(),
                })
                .set(1);
        }
        self.unrouted_events.set(stats.unrouted.len as i64);
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

fn outcome_label(outcome: AttemptOutcome) -> &'static str {
    match outcome {
        AttemptOutcome::Delivered => "delivered",
        AttemptOutcome::Accepted => "accepted",
        AttemptOutcome::Retry => "retry",
        AttemptOutcome::Rejected => "rejected",
        AttemptOutcome::TooLarge => "too_large",
        AttemptOutcome::AuthFailed => "auth_failed",
        AttemptOutcome::Misconfigured => "misconfigured",
    }
}

/// The `state` label of a destination.
pub fn state_label(state: &DestinationState) -> &'static str {
    match state {
        DestinationState::Ok => "ok",
        DestinationState::Retrying(_) => "retrying",
        DestinationState::Degraded(_) => "degraded",
        DestinationState::AuthFailed(_) => "auth_failed",
        DestinationState::Misconfigured(_) => "misconfigured",
        DestinationState::Disabled => "disabled",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_from_ids_are_escaped() {
        let m = Metrics::new();
        m.queued("customer/m1/a\"b", Some("m1/a\"b\\c\nd".into()), 3);
        let stats = EngineStats {
            total: Default::default(),
            destinations: Vec::new(),
            unrouted: raxe_storage::QueueStats {
                len: 0,
                bytes: 0,
                oldest_age: None,
            },
            kept_queues: Vec::new(),
        };
        let page = m.render(&stats);
        let line = page
            .lines()
            .find(|l| l.starts_with("raxe_events_queued_total{"))
            .unwrap_or_else(|| panic!("{page}"));
        assert_eq!(
            line,
            r#"raxe_events_queued_total{destination="customer/m1/a\"b",customer="m1/a\"b\\c\nd"} 3"#
        );
    }
}
