//! Delivering one lease: encode, send, classify, and act on the answer.
//!
//! Events are settled strictly in order, so the settled ones are always a prefix of the
//! lease: on a halt that prefix is acked and the rest released, order intact. An event is
//! settled when the SIEM accepted it or when it is durably in the dead-letter queue.
//! Rejections are narrowed down (the SIEM's `invalid-event-number`, else halving) until only
//! the refused events are dead-lettered: one poison event never blocks a queue.
//!
//! With indexer acknowledgement (Splunk `useACK`) a request accepted with an ack id is
//! settled for this lease's purposes but not yet safe: its records are split off into a
//! lease of their own and handed to the destination's [`crate::indexer_ack`] tracker,
//! which acks them in the queue only once the SIEM confirms the id. Dead letters inside a
//! request's span (undecodable records between its events) go with it; the rest of the
//! settled prefix (dead letters outside the requests' spans) is acked at once.

use std::future::Future;
use std::ops::Range;
use std::pin::Pin;

use std::time::{Duration, Instant};

use raxe_adapters::adapter::{EncodedBatch, SiemAdapter};
use raxe_adapters::event::{JsonEvent, ScanEvent};
use raxe_adapters::outcome::{Outcome, RejectedEvents};
use raxe_adapters::request::{EncodedRequest, Payload, Response};
use raxe_storage::{AckProgress, Lease};
use tokio::sync::watch;

use crate::audit::{now_ms, AttemptOutcome, AuditKind, AuditLog};
use crate::backoff::Backoff;
use crate::dead_letter::{DeadLetter, DeadLetterHeader};
use crate::destination::{Destination, DestinationState};

mod settle;

pub(crate) use settle::{ack_failed, ack_whole_lease, DeferredAck, ACK_FAILED};
use settle::{ack_succeeded, finish_lease, log_ack_failure, AwaitingAck};

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
    /// Decodable events, in lease order.
    events: LeaseEvents,
    /// Lease position of each decoded event.
    positions: Vec<usize>,
    /// Queue bytes of every lease record, for dead letters.
    raw: Vec<bytes::Bytes>,
    /// Seq of every lease record.
    seqs: Vec<u64>,
    /// Lease position and marker of every record dead-lettered by this delivery; a marker
    /// is removed once its record is acked.
    dead_letter_markers: Vec<(usize, Vec<u8>)>,
    /// Events settled so far (a prefix of `events`).
    settled: usize,
    /// Accepted requests that wait for an indexer ack, in order.
    awaiting_ack: Vec<AwaitingAck>,
    /// This worker's lane (ack ids grow along one lane).
    lane: usize,
    /// The previous lease's ack: durable before this lease's first request goes out,
    /// finished before this lease is acked or released.
    previous_ack: Option<DeferredAck>,
}

/// The decodable records of a lease, in the form the adapter encodes from.
enum LeaseEvents {
    Decoded(Vec<ScanEvent>),
    /// Records kept as their JSON object (adapters that embed it verbatim).
    Json(Vec<JsonEvent>),
}

impl LeaseEvents {
    /// Decodes `records` as far as the adapter needs; records that do not decode go to
    /// `undecodable` with the reason, the others' lease positions to `positions`.
    fn decode(
        embeds_json: bool,
        records: &[bytes::Bytes],
        positions: &mut Vec<usize>,
        undecodable: &mut Vec<(usize, String)>,
    ) -> LeaseEvents {
        fn each<T, E: std::fmt::Display>(
            records: &[bytes::Bytes],
            decode: impl Fn(&bytes::Bytes) -> Result<T, E>,
            positions: &mut Vec<usize>,
            undecodable: &mut Vec<(usize, String)>,
        ) -> Vec<T> {
            let mut out = Vec::with_capacity(records.len());
            for (position, data) in records.iter().enumerate() {
                match decode(data) {
                    Ok(event) => {
                        out.push(event);
                        positions.push(position);
                    }
                    Err(e) => {
                        undecodable.push((position, format!("undecodable queue record: {e}")))
                    }
                }
            }
            out
        }
        if embeds_json {
            let decode = |data: &bytes::Bytes| JsonEvent::from_record(data.clone());
            LeaseEvents::Json(each(records, decode, positions, undecodable))
        } else {
            let decode = |data: &bytes::Bytes| ScanEvent::from_queue_bytes(data);
            LeaseEvents::Decoded(each(records, decode, positions, undecodable))
        }
    }

    fn len(&self) -> usize {
        match self {
            LeaseEvents::Decoded(events) => events.len(),
            LeaseEvents::Json(events) => events.len(),
        }
    }

    fn encode(&self, adapter: &dyn SiemAdapter, range: Range<usize>) -> EncodedBatch {
        match self {
            LeaseEvents::Decoded(events) => adapter.encode(&events[range]),
            LeaseEvents::Json(events) => adapter.encode_json(&events[range]),
        }
    }
}

type Step<'b> = Pin<Box<dyn Future<Output = Result<(), Halt>> + Send + 'b>>;

impl<'a> Delivery<'a> {
    pub fn new(
        dest: &'a Destination,
        adapter: &'a dyn SiemAdapter,
        audit: &'a AuditLog,
        backoff: &'a mut Backoff,
        shutdown: watch::Receiver<bool>,
        lane: usize,
    ) -> Self {
        Delivery {
            dest,
            lane,
            adapter,
            awaiting_ack: Vec::new(),
            audit,
            backoff,
            shutdown,
            events: LeaseEvents::Decoded(Vec::new()),
            positions: Vec::new(),
            raw: Vec::new(),
            seqs: Vec::new(),
            dead_letter_markers: Vec::new(),
            settled: 0,
            previous_ack: None,
        }
    }

    /// Delivers a lease; acks what was settled and releases the rest.
    ///
    /// When every record was settled by a final acceptance (no indexer ack, no dead
    /// letters), the lease is acked here as far as that waits for no flush
    /// ([`raxe_storage::Queue::ack_without_waiting`]); any rest runs in the background and
    /// its handle is left in `deferred`: it overlaps the next lease's decoding and
    /// encoding, is durable before that lease's first request is sent, and finishes before
    /// that lease is acked or released. Nothing is lost if the process dies first: the
    /// records were never acked, so they are delivered again (a duplicate batch, never
    /// two). An ack that fails (before it was durable) halts the lane like a SIEM that
    /// answers "retry": its batch may come back after a restart, and so may every batch
    /// sent before acks work again.
    pub async fn run(
        mut self,
        lease: Lease,
        deferred: &mut Option<DeferredAck>,
    ) -> Result<(), Halt> {
        self.previous_ack = deferred.take();
        self.raw = lease.records.iter().map(|r| r.data.clone()).collect();
        self.seqs = lease.records.iter().map(|r| r.seq).collect();
        let mut undecodable = Vec::new();
        self.events = LeaseEvents::decode(
            self.adapter.embeds_json(),
            &self.raw,
            &mut self.positions,
            &mut undecodable,
        );
        let mut result = Ok(());
        if !undecodable.is_empty() {
            result = self.dead_letter(undecodable).await;
        }
        let ack_upto = if result.is_err() {
            // The undecodable records are not in the dead-letter queue: nothing is settled.
            0
        } else {
            result = self.deliver(0..self.events.len()).await;
            if result.is_ok() || self.settled == self.events.len() {
                lease.len()
            } else {
                // Undecodable records before the first unsettled event were dead-lettered
                // above.
                self.positions[self.settled]
            }
        };
        if let Some(previous) = self.previous_ack.take() {
            if previous.finish().await.is_err() && result.is_ok() {
                result = Err(ack_failed());
            }
        }
        let queue = self.dest.queue.clone();
        let dead_letters_acked;
        if self.awaiting_ack.is_empty() && self.dead_letter_markers.is_empty() && result.is_ok() {
            // The previous ack finished above: at most one runs in the background.
            let records = lease.len();
            debug_assert_eq!(ack_upto, records);
            // Here, as far as that needs no flush (see `run_here`); the rest, if any, on
            // the storage pool, straight: a task spawned here would sit in this worker
            // thread's LIFO slot, which other workers cannot steal, until the next batch's
            // encoding is done, so it would not overlap it.
            // A panic inside counts as a failed ack.
            let acked = crate::storage_pool::run_here(|| queue.clone().ack_without_waiting(lease))
                .map_err(|panicked| panicked.to_string())
                .and_then(|acked| acked.map_err(|e| e.to_string()));
            let (rest, counted) = match acked {
                Ok(AckProgress::Durable) => return result,
                Ok(AckProgress::Pending { rest, counted }) => (rest, counted),
                Err(e) => {
                    log_ack_failure(queue.name(), &e);
                    return Err(ack_failed());
                }
            };
            let (durable_tx, durable) = tokio::sync::oneshot::channel();
            let handle = crate::storage_pool::spawn(move || {
                let mut durable_tx = Some(durable_tx);
                let acked = rest(&mut || {
                    if let Some(tx) = durable_tx.take() {
                        let _ = tx.send(());
                    }
                });
                ack_succeeded(queue.name(), acked)
            });
            *deferred = Some(DeferredAck::new(
                if counted { records } else { 0 },
                durable,
                handle,
            ));
            return result;
        } else if self.awaiting_ack.is_empty() {
            // With indexer acks this is a lease of dead letters only: its ack holding
            // tells that acks work again as well as a poll's round would.
            let rounds = self
                .adapter
                .indexer_ack()
                .map(|_| self.dest.acks.failed_rounds());
            dead_letters_acked = finish_lease(queue, lease, ack_upto).await;
            if let Some(rounds) = rounds {
                if dead_letters_acked && ack_upto > 0 && result.is_ok() {
                    crate::indexer_ack::acks_work_again(self.dest, Some(rounds));
                }
            }
        } else {
            dead_letters_acked = self.hand_over_to_acks(queue, lease, ack_upto).await;
        }
        if dead_letters_acked {
            self.remove_dead_letter_markers(ack_upto).await;
        } else if result.is_ok() {
            result = Err(ack_failed());
        }
        result
    }

    /// The server and channel the adapter's ack ids belong to (empty without acks).
    fn ack_target(&self) -> String {
        self.adapter
            .indexer_ack()
            .map(|a| a.ack_target())
            .unwrap_or_default()
    }

    fn deliver(&mut self, range: Range<usize>) -> Step<'_> {
        Box::pin(async move {
            if range.is_empty() {
                return Ok(());
            }
            let encoded = self.events.encode(self.adapter, range.clone());
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
        // The rest of the previous batch's ack, if any, ran beside this batch's lease and
        // encoding; the ack is durable before this batch can reach the SIEM, so a crash
        // repeats at most this batch. What follows that point overlaps this send; `run`
        // waits for it before starting another.
        if let Some(previous) = self.previous_ack.as_mut() {
            if !previous.durable().await {
                return Err(ack_failed());
            }
        }
        let span = offset + request.events.start..offset + request.events.end;
        self.backoff.reset_quick();
        let retry_count = self.adapter.config().retry_count;
        let mut retries = 0;
        loop {
            let started = Instant::now();
            // A restart noted while this request is out leaves its answer's origin unknown.
            // (No ack ids, no epochs: the tracker's lock stays off the plain path.)
            let sent_epoch = match self.adapter.indexer_ack() {
                Some(_) => self.dest.acks.epoch(),
                None => 0,
            };
            let answer = self.adapter.send(&request).await;
            let outcome = self.adapter.classify(&request, &answer);
            let ack_id = match outcome {
                Outcome::Delivered => self
                    .adapter
                    .indexer_ack()
                    .and_then(|ack| ack.ack_id(&answer)),
                _ => None,
            };
            self.record_attempt(
                &request,
                &answer,
                &outcome,
                ack_id.is_some(),
                started.elapsed(),
            );
            match outcome {
                Outcome::Delivered => {
                    if let Some(id) = ack_id {
                        // A restart is seen the moment it reuses an id (see indexer_ack).
                        let (stale, epoch) =
                            self.dest
                                .acks
                                .issued(&self.ack_target(), self.lane, id, sent_epoch);
                        crate::indexer_ack::release_leases(self.dest.queue.clone(), stale).await;
                        self.awaiting_ack.push(AwaitingAck {
                            span: span.clone(),
                            ack_id: id,
                            epoch,
                        });
                    }
                    self.settled = span.end;
                    self.dest.mark_delivered(now_ms());
                    return Ok(());
                }
                Outcome::Retry { after, reason } => {
                    self.dest.mark_error(reason.clone());
                    // Shown while it lasts (a retry may wait a minute); not over a worse state.
                    self.dest.replace_state_if(
                        DestinationState::is_delivering,
                        DestinationState::Retrying(reason.clone()),
                    );
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
    /// halts delivery (the events stay queued) rather than losing them. Each record gets a
    /// marker in the same atomic step, and records whose marker exists (dead-lettered by a
    /// run that died before its ack) are not written again.
    async fn dead_letter(&mut self, items: Vec<(usize, String)>) -> Result<(), Halt> {
        let time_ms = now_ms();
        let reason = items.first().map(|(_, r)| r.clone()).unwrap_or_default();
        let mut keys = Vec::with_capacity(items.len());
        let letters: Vec<Vec<u8>> = items
            .into_iter()
            .map(|(position, reason)| {
                let key = crate::dead_letter::marker_key(
                    &self.dest.id,
                    self.seqs[position],
                    &self.raw[position],
                );
                keys.push((position, key));
                DeadLetter {
                    header: DeadLetterHeader {
                        time_ms,
                        destination: self.dest.id.clone(),
                        reason,
                    },
                    event: self.raw[position].to_vec(),
                }
                .encode()
            })
            .collect();
        let store = self.dest.store.clone();
        let dlq = self.dest.dead_letters.name().to_string();
        let markers: Vec<Vec<u8>> = keys.iter().map(|(_, key)| key.clone()).collect();
        let appended = crate::storage_pool::spawn(move || {
            let mut fresh: Vec<(&[u8], &[u8])> = Vec::new();
            let mut records: Vec<&[u8]> = Vec::new();
            for (key, letter) in markers.iter().zip(&letters) {
                if store.marker(key)?.is_none() {
                    fresh.push((key, b""));
                    records.push(letter);
                }
            }
            if !records.is_empty() {
                store.append_group_with_markers(&[(dlq.as_str(), &records)], &fresh)?;
            }
            Ok::<usize, raxe_storage::QueueError>(records.len())
        })
        .await;
        self.dead_letter_markers.extend(keys);
        match appended {
            Ok(Ok(count)) => {
                if count > 0 {
                    tracing::warn!(destination = %self.dest.id, events = count, %reason, "dead-lettered");
                    self.audit.record(
                        &self.dest.id,
                        self.dest.customer_label(),
                        AuditKind::DeadLettered {
                            events: count,
                            reason,
                        },
                    );
                }
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
        awaits_ack: bool,
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
            // Queued by the SIEM, not yet indexed: counted delivered at its indexer ack.
            Outcome::Delivered if awaits_ack => (AttemptOutcome::Accepted, error),
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

    /// Waits between quick retries; cut short by shutdown, and by the destination's
    /// retirement (its replacement waits for this worker to stop).
    async fn sleep(&mut self, delay: Duration) -> Result<(), Halt> {
        tokio::select! {
            _ = tokio::time::sleep(delay) => Ok(()),
            _ = self.shutdown.wait_for(|stop| *stop) => Err(Halt::Shutdown),
            _ = self.dest.retired() => Err(Halt::Shutdown),
        }
    }
}
