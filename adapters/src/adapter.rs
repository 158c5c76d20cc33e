//! The one trait the engine sees.

use std::future::Future;
use std::pin::Pin;

use crate::config::SiemConfig;
use crate::event::ScanEvent;
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
