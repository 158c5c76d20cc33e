//! The one trait the engine sees.

use std::future::Future;
use std::pin::Pin;

use crate::config::SiemConfig;
use crate::event::{JsonEvent, ScanEvent};
use crate::outcome::Outcome;
use crate::request::{EncodedRequest, Response, TransportError};

/// A boxed future, so that adapters stay object-safe (`Box<dyn SiemAdapter>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One configured destination: encodes batches (pure, synchronous), sends them over its
/// transport (async), and classifies what the peer answered.
pub trait SiemAdapter: Send + Sync {
    /// The validated configuration this adapter was built from.
    fn config(&self) -> &SiemConfig;

    /// One event as this destination represents it (a JSON envelope, a record, a CEF line),
    /// as UTF-8 bytes. The same bytes `encode` would put in a request for this event alone.
    fn transform_event(&self, event: &ScanEvent) -> Vec<u8>;

    /// Turns a batch into requests that each respect the destination's size limits.
    /// Every event lands in exactly one request or in `EncodedBatch::oversized`.
    fn encode(&self, batch: &[ScanEvent]) -> EncodedBatch;

    /// True when this destination embeds each event's JSON object verbatim, so the engine
    /// should hand it queue records undecoded through [`SiemAdapter::encode_json`].
    fn embeds_json(&self) -> bool {
        false
    }

    /// [`SiemAdapter::encode`] for events still in their queued JSON form; the same
    /// requests. The default decodes every event and calls `encode`; an event that does
    /// not decode goes to `oversized` with the reason (the engine dead-letters it).
    fn encode_json(&self, batch: &[JsonEvent]) -> EncodedBatch {
        let mut encoded = EncodedBatch::default();
        let mut run: Vec<ScanEvent> = Vec::new();
        let mut run_start = 0;
        for (i, json) in batch.iter().enumerate() {
            match json.event() {
                Ok(event) => {
                    if run.is_empty() {
                        run_start = i;
                    }
                    run.push(event);
                }
                Err(e) => {
                    if !run.is_empty() {
                        encoded.append_shifted(self.encode(&run), run_start);
                        run.clear();
                    }
                    encoded.oversized.push((i, e.to_string()));
                }
            }
        }
        if !run.is_empty() {
            encoded.append_shifted(self.encode(&run), run_start);
        }
        encoded
    }

    /// Sends one request over the destination's transport (connection reused).
    fn send<'a>(
        &'a self,
        request: &'a EncodedRequest,
    ) -> BoxFuture<'a, Result<Response, TransportError>>;

    /// What the engine should do with the events of `request` given the answer.
    fn classify(
        &self,
        request: &EncodedRequest,
        answer: &Result<Response, TransportError>,
    ) -> Outcome;

    /// Indexer acknowledgement (Splunk `useACK`, protocols.md §1.6): `Some` when an
    /// accepted request is only queued by the SIEM and must be confirmed by an ack poll
    /// before its events leave the queue. `None` (the default): accepted is final.
    fn indexer_ack(&self) -> Option<&dyn crate::splunk::ack::IndexerAck> {
        None
    }

    /// Encodes, sends and classifies one event now (the SDK's `send_event`).
    fn send_event<'a>(&'a self, event: &'a ScanEvent) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let batch = self.encode(std::slice::from_ref(event));
            if let Some((_, reason)) = batch.oversized.into_iter().next() {
                return Outcome::Rejected {
                    events: crate::outcome::RejectedEvents::All,
                    reason,
                };
            }
            let mut outcome = Outcome::Delivered;
            for request in &batch.requests {
                let answer = self.send(request).await;
                outcome = self.classify(request, &answer);
                if outcome != Outcome::Delivered {
                    break;
                }
            }
            outcome
        })
    }
}

/// The result of encoding one batch.
#[derive(Debug, Default)]
pub struct EncodedBatch {
    pub requests: Vec<EncodedRequest>,
    /// Events that can never fit in a request (position in the batch, reason): the engine
    /// dead-letters them.
    pub oversized: Vec<(usize, String)>,
}

impl EncodedBatch {
    /// Appends the requests and oversized events of `other`, which encoded the events
    /// from position `offset` of this batch on.
    fn append_shifted(&mut self, other: EncodedBatch, offset: usize) {
        for mut request in other.requests {
            request.events = request.events.start + offset..request.events.end + offset;
            self.requests.push(request);
        }
        self.oversized.extend(
            other
                .oversized
                .into_iter()
                .map(|(i, why)| (i + offset, why)),
        );
    }
}
