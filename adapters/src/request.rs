//! What an adapter hands to a transport, and what comes back.
//!
//! Encoding is pure: an adapter turns a batch of events into one or more [`EncodedRequest`]s
//! without doing I/O. Each request remembers which events of the batch it carries, so the
//! engine can ack, retry or dead-letter exactly those.

use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri};

/// One unit of work for a transport.
#[derive(Debug, Clone)]
pub struct EncodedRequest {
    /// Positions (in the batch passed to `encode`) of the events this request carries.
    pub events: Range<usize>,
    pub payload: Payload,
}

// One payload per request, built once: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Payload {
    Http(HttpRequest),
    /// Syslog messages, one per event, *unframed* (the transport frames them for TCP/TLS,
    /// or sends each as one datagram over UDP).
    Syslog(Vec<Bytes>),
}

#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: Method,
    pub uri: Uri,
    /// Every header to send, including `Authorization` and `Content-Encoding`.
    /// `Content-Length` is set by the transport from `body`.
    pub headers: HeaderMap,
    /// The body exactly as it goes on the wire (already compressed if compression is on).
    pub body: Bytes,
    /// Uncompressed body length, for size accounting and limits.
    pub uncompressed_len: usize,
}

/// What the peer answered.
#[derive(Debug, Clone)]
pub enum Response {
    Http(HttpResponse),
    /// Every syslog message was written (TCP/TLS: flushed to the socket without error;
    /// UDP: every datagram handed to the kernel). Weak, by the nature of syslog.
    SyslogWritten,
}

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// At most the first 64 KiB of the body; enough to classify and to quote in errors.
    pub body: Bytes,
}

/// A request that never got an answer. Always worth retrying, except `Tls` certificate
/// failures, which stay failures until the configuration changes.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    #[error("TLS failure: {0}")]
    Tls(String),
    #[error("I/O error: {0}")]
    Io(String),
}
