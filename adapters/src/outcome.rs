//! How an adapter reads an answer: the engine's whole vocabulary for "what now".

use std::time::Duration;

/// The engine's next step for one request, decided by the destination's adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The SIEM accepted every event of the request: ack them.
    Delivered,
    /// Transient failure: keep the events queued and try again, no sooner than `after`
    /// when the peer said so (`Retry-After`).
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// The SIEM refused some events for good: dead-letter them with `reason`.
    Rejected {
        events: RejectedEvents,
        reason: String,
    },
    /// The request was too large for the peer (HTTP 413 and the like): split and resend.
    TooLarge { reason: String },
    /// Credentials are wrong or revoked: stop, keep everything queued, alert.
    AuthFailed { reason: String },
    /// Wrong URL, index, channel, ...: stop, keep everything queued, alert.
    Misconfigured { reason: String },
}

/// Which events of a request a rejection concerns (positions relative to the request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectedEvents {
    /// Every event of the request.
    All,
    /// The peer named the first bad event (HEC `invalid-event-number`): events before it
    /// may be resent, this one dead-lettered, the rest resent.
    FirstBad(usize),
    /// The peer did not say which: the engine splits the request to isolate them.
    Unknown,
}
