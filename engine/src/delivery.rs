//! Delivering one lease: encode, send, classify, and act on the answer.
//!
//! Events are settled strictly in order, so the settled ones are always a prefix of the
//! lease: on a halt that prefix is acked and the rest released, order intact. An event is
//! settled when the SIEM accepted it or when it is durably in the dead-letter queue.
//! Rejections are narrowed down (the SIEM's `invalid-event-number`, else halving) until only
//! the refused events are dead-lettered: one poison event never blocks a queue.

use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use raxe_adapters::adapter::SiemAdapter;
use raxe_adapters::event::ScanEvent;
use raxe_adapters::outcome::{Outcome, RejectedEvents};
use raxe_adapters::request::{EncodedRequest, Payload, Response};
use raxe_storage::{Lease, Queue};
use tokio::sync::watch;

use crate::audit::{now_ms, AttemptOutcome, AuditKind, AuditLog};
use crate::backoff::Backoff;
use crate::dead_letter::{DeadLetter, DeadLetterHeader};
use crate::destination::Destination;

/// Why a lease was not finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Halt {
    /// Quick retries exhausted: try again later.
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    AuthFailed(String),
    Misconfigured(String),
    /// The engine is stopping.
    Shutdown,
}

pub(crate) struct Delivery<'a> {
    pub dest: &'a Destination,
    pub adapter: &'a dyn SiemAdapter,
    pub audit: &'a AuditLog,
    pub backoff: &'a mut Backoff,
    pub shutdown: watch::Receiver<bool>,
    /// Decoded events, in lease order.
    events: Vec<ScanEvent>,
    /// Lease position of each decoded event.
    positions: Vec<usize>,
    /// Queue bytes of every lease record, for dead letters.
    raw: Vec<Vec<u8>>,
    /// Events settled so far (a prefix of `events`).
    settled: usize,
}

type Step<'b> = Pin<Box<dyn Future<Output = Result<(), Halt>> + Send + 'b>>;

impl<'a> Delivery<'a> {
    pub fn new(
        dest: &'a Destination,
        adapter: &'a dyn SiemAdapter,
        audit: &'a AuditLog,
        backoff: &'a mut Backoff,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Delivery {
            dest,
            adapter,
            audit,
            backoff,
            shutdown,
            events: Vec::new(),
            positions: Vec::new(),
            raw: Vec::new(),
            settled: 0,
        }
    }

    /// Delivers a lease; acks what was settled and releases the rest.
    pub async fn run(mut self, lease: Lease) -> Result<(), Halt> {
        self.raw = lease.records.iter().map(|r| r.data.clone()).collect();
        let mut undecodable = Vec::new();
        for (position, data) in self.raw.iter().enumerate() {
            match ScanEvent::from_queue_bytes(data) {
                Ok(event) => {
                    self.events.push(event);
                    self.positions.push(position);
                }
                Err(e) => undecodable.push((position, format!("undecodable queue record: {e}"))),
            }
        }
        let mut result = Ok(());
        if !undecodable.is_empty() {
            result = self.dead_letter(undecodable).await;
        }
        if result.is_ok() {
            result = self.deliver(0..self.events.len()).await;
        }
        let ack_upto = if result.is_ok() || self.settled == self.events.len() {
            lease.len()
        } else {
            // Undecodable records before the first unsettled event were dead-lettered above.
            self.positions[self.settled]
        };
        let queue = self.dest.queue.clone();
        finish_lease(queue, lease, ack_upto).await;
        result
    }

    fn deliver(&mut self, range: Range<usize>) -> Step<'_> {
        Box::pin(async move {
            if range.is_empty() {
                return Ok(());
            }
            let encoded = self.adapter.encode(&self.events[range.clone()]);
            let mut oversized = encoded.oversized.into_iter().peekable();
            let mut requests = encoded.requests.into_iter().peekable();
            // Walk requests and oversized events in batch order: settled stays a prefix.
            loop {
                let next_oversized = oversized.peek().map(|(i, _)| *i);
                let next_request = requests.peek().map(|r| r.events.start);
                match (next_oversized, next_request) {
                    (Some(i), r) if r.is_none_or(|start| i < start) => {
                        let (i, reason) = oversized.next().expect("peeked");
                        let at = range.start + i;
                        self.dead_letter(vec![(self.positions[at], reason)]).await?;
                    }
                    (_, Some(_)) => {
                        let request = requests.next().expect("peeked");
                        self.send(range.start, request).await?;
                    }
                    (None, None) => break,
                    (Some(_), None) => unreachable!("matched by the first arm"),
                }
            }
            Ok(())
        })
    }

    /// Sends one request (quick retries included) and settles its events.
    async fn send(&mut self, offset: usize, request: EncodedRequest) -> Result<(), Halt> {
        let span = offset + request.events.start..offset + request.events.end;
        self.backoff.reset_quick();
        let retry_count = self.adapter.config().retry_count;
        let mut retries = 0;
        loop {
            let started = Instant::now();
            let answer = self.adapter.send(&request).await;
            let outcome = self.adapter.classify(&request, &answer);
            self.record_attempt(&request, &answer, &outcome, started.elapsed());
            match outcome {
                Outcome::Delivered => {
                    self.settled = span.end;
                    self.dest.mark_delivered(now_ms());
                    return Ok(());
                }
                Outcome::Retry { after, reason } => {
                    self.dest.mark_error(reason.clone());
                    if retries >= retry_count {
                        return Err(Halt::Retry { after, reason });
                    }
                    retries += 1;
                    let delay = self.backoff.next_quick(after);
                    tracing::debug!(destination = %self.dest.id, ?delay, %reason, "retrying");
                    self.sleep(delay).await?;
                }
                Outcome::Rejected { events, reason } => {
                    self.dest.mark_error(reason.clone());
                    return self.narrow(span, events, reason).await;
                }
                Outcome::TooLarge { reason } => {
                    return self.narrow(span, RejectedEvents::Unknown, reason).await;
                }
                Outcome::AuthFailed { reason } => {
                    self.dest.mark_error(reason.clone());
                    return Err(Halt::AuthFailed(reason));
                }
                Outcome::Misconfigured { reason } => {
                    self.dest.mark_error(reason.clone());
                    return Err(Halt::Misconfigured(reason));
                }
            }
        }
    }

    /// Finds the refused events of `span`: dead-letters them, delivers the others.
    async fn narrow(
        &mut self,
        span: Range<usize>,
        which: RejectedEvents,
        reason: String,
    ) -> Result<(), Halt> {
        let len = span.end - span.start;
        match which {
            RejectedEvents::All => self.dead_letter_span(span, &reason).await,
            RejectedEvents::FirstBad(k) if k < len => {
                let bad = span.start + k;
                self.deliver(span.start..bad).await?;
                self.dead_letter_span(bad..bad + 1, &reason).await?;
                self.deliver(bad + 1..span.end).await
            }
            _ if len == 1 => self.dead_letter_span(span, &reason).await,
            _ => {
                let mid = span.start + len / 2;
                self.deliver(span.start..mid).await?;
                self.deliver(mid..span.end).await
            }
        }
    }

    async fn dead_letter_span(&mut self, span: Range<usize>, reason: &str) -> Result<(), Halt> {
        let items = span
            .clone()
            .map(|i| (self.positions[i], reason.to_string()))
            .collect();
        self.dead_letter(items).await?;
        self.settled = self.settled.max(span.end);
        Ok(())
    }

    /// Appends lease records to the dead-letter queue, durably. A full dead-letter queue
    /// halts delivery (the events stay queued) rather than losing them.
    async fn dead_letter(&mut self, items: Vec<(usize, String)>) -> Result<(), Halt> {
        let time_ms = now_ms();
        let count = items.len();
        let reason = items.first().map(|(_, r)| r.clone()).unwrap_or_default();
        let letters: Vec<Vec<u8>> = items
            .into_iter()
            .map(|(position, reason)| {
                DeadLetter {
                    header: DeadLetterHeader {
                        time_ms,
                        destination: self.dest.id.clone(),
                        reason,
                    },
                    event: self.raw[position].clone(),
                }
                .encode()
            })
            .collect();
        let dlq = self.dest.dead_letters.clone();
        let appended = tokio::task::spawn_blocking(move || {
            let refs: Vec<&[u8]> = letters.iter().map(Vec::as_slice).collect();
            dlq.append(&refs)
        })
        .await;
        match appended {
            Ok(Ok(_)) => {
                tracing::warn!(destination = %self.dest.id, events = count, %reason, "dead-lettered");
                self.audit.record(
                    &self.dest.id,
                    self.dest.customer_label(),
                    AuditKind::DeadLettered {
                        events: count,
                        reason,
                    },
                );
                Ok(())
            }
            Ok(Err(e)) => Err(Halt::Retry {
                after: None,
                reason: format!("cannot dead-letter: {e}"),
            }),
            Err(e) => Err(Halt::Retry {
                after: None,
                reason: format!("cannot dead-letter: {e}"),
            }),
        }
    }

    fn record_attempt(
        &self,
        request: &EncodedRequest,
        answer: &Result<Response, raxe_adapters::request::TransportError>,
        outcome: &Outcome,
        latency: Duration,
    ) {
        let (status, error) = match answer {
            Ok(Response::Http(response)) => (Some(response.status.as_u16()), None),
            Ok(Response::SyslogWritten) => (None, None),
            Err(e) => (None, Some(e.to_string())),
        };
        let bytes = match &request.payload {
            Payload::Http(http) => http.body.len(),
            Payload::Syslog(messages) => messages.iter().map(|m| m.len()).sum(),
        };
        let (outcome, error) = match outcome {
            Outcome::Delivered => (AttemptOutcome::Delivered, error),
            Outcome::Retry { reason, .. } => (AttemptOutcome::Retry, Some(reason.clone())),
            Outcome::Rejected { reason, .. } => (AttemptOutcome::Rejected, Some(reason.clone())),
            Outcome::TooLarge { reason } => (AttemptOutcome::TooLarge, Some(reason.clone())),
            Outcome::AuthFailed { reason } => (AttemptOutcome::AuthFailed, Some(reason.clone())),
            Outcome::Misconfigured { reason } => {
                (AttemptOutcome::Misconfigured, Some(reason.clone()))
            }
        };
        self.audit.record(
            &self.dest.id,
            self.dest.customer_label(),
            AuditKind::Attempt {
                events: request.events.len(),
                bytes,
                outcome,
                status,
                error,
                latency_ms: latency.as_millis() as u64,
            },
        );
    }

    async fn sleep(&mut self, delay: Duration) -> Result<(), Halt> {
        tokio::select! {
            _ = tokio::time::sleep(delay) => Ok(()),
            _ = self.shutdown.wait_for(|stop| *stop) => Err(Halt::Shutdown),
        }
    }
}

/// Acks the first `ack_upto` records of the lease and releases the rest.
async fn finish_lease(queue: Arc<dyn Queue>, lease: Lease, ack_upto: usize) {
    let id = queue.name().to_string();
    let done = tokio::task::spawn_blocking(move || {
        let (settled, rest) = queue.split_lease(lease, ack_upto);
        if !rest.is_empty() {
            queue.release(rest);
        }
        if settled.is_empty() {
            return Ok(());
        }
        // Dropping `settled` after a failed ack leaves it leased; nothing is lost, and the
        // records come back after a restart.
        queue.ack(settled)
    })
    .await;
    match done {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(queue = %id, error = %e, "ack failed; the events will be delivered again")
        }
        Err(e) => tracing::error!(queue = %id, error = %e, "ack task failed"),
    }
}
