//! Microsoft Sentinel through the HTTP Data Collector API (protocols.md §3.1, §7.4).
//!
//! Stages: [`records`] (PascalCase records), [`signature`] (SharedKey HMAC), this module
//! (posts of at most 30 MB as JSON arrays, headers), [`retry`] (classification).
//! Headers: `Content-Type: application/json`, `Log-Type`, `x-ms-date` (RFC 1123),
//! `time-generated-field: EventTime`, `Authorization: SharedKey <ws>:<sig>`. Not gzipped.
//! `send` re-signs with the current date, so a retried request never carries a stale
//! `x-ms-date`.

pub mod records;
pub mod retry;
pub mod signature;
#[cfg(test)]
mod tests;

use std::time::Duration;

use http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, Uri};
use time::OffsetDateTime;

use crate::adapter::{BoxFuture, EncodedBatch, SiemAdapter};
use crate::config::{ConfigError, SiemConfig, SiemOptions};
use crate::event::ScanEvent;
use crate::http_common::{classify_transport_error, pack_with, post, secret_header, JSON_ARRAY};
use crate::outcome::Outcome;
use crate::request::{EncodedRequest, HttpRequest, Payload, Response, TransportError};
use crate::transport::HttpTransport;

pub use self::records::{write_record, TIME_FIELD};
pub use self::retry::{classify_data_collector, MAX_POST_BYTES};

/// API path and version appended when the URL has no path.
pub const DATA_COLLECTOR_PATH: &str = "/api/logs?api-version=2016-04-01";

const X_MS_DATE: HeaderName = HeaderName::from_static("x-ms-date");

/// A clock, replaceable in tests.
pub type Clock = fn() -> OffsetDateTime;

pub struct SentinelAdapter {
    config: SiemConfig,
    workspace_id: String,
    key: Vec<u8>,
    uri: Uri,
    headers: HeaderMap,
    max_bytes: usize,
    clock: Clock,
    transport: HttpTransport,
}

impl std::fmt::Debug for SentinelAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelAdapter")
            .field("config", &self.config)
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

impl SentinelAdapter {
    pub fn new(config: SiemConfig) -> Result<SentinelAdapter, ConfigError> {
        config.validate()?;
        let SiemOptions::Sentinel(o) = &config.extra else {
            return Err(ConfigError::OptionsMismatch {
                siem_type: crate::config::SiemType::Sentinel,
                options: config.siem_type,
            });
        };
        let key = config.sentinel_key()?;
        let uri = config.uri()?;
        let uri = if uri.path() == "/api/logs" && uri.query().is_none() {
            let mut parts = uri.clone().into_parts();
            parts.path_and_query = Some(DATA_COLLECTOR_PATH.parse().expect("static"));
            Uri::from_parts(parts).unwrap_or(uri)
        } else {
            crate::http_common::with_default_path(&uri, DATA_COLLECTOR_PATH)
        };
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            HeaderName::from_static("log-type"),
            HeaderValue::from_str(&o.log_type).expect("validated"),
        );
        headers.insert(
            HeaderName::from_static("time-generated-field"),
            HeaderValue::from_static(TIME_FIELD),
        );
        let transport =
            HttpTransport::new(&config.tls, Duration::from_secs(config.timeout_seconds))?;
        Ok(SentinelAdapter {
            workspace_id: o.workspace_id.clone(),
            config,
            key,
            uri,
            headers,
            max_bytes: MAX_POST_BYTES,
            clock: OffsetDateTime::now_utc,
            transport,
        })
    }

    /// Replaces the clock (golden tests).
    pub fn with_clock(mut self, clock: Clock) -> SentinelAdapter {
        self.clock = clock;
        self
    }

    /// Lowers the post size limit (tests of splitting).
    pub fn with_max_post_bytes(mut self, max: usize) -> SentinelAdapter {
        self.max_bytes = max;
        self
    }

    /// Sets `x-ms-date` and `Authorization` for `req` at time `now`.
    pub fn sign(&self, req: &mut HttpRequest, now: OffsetDateTime) {
        let date = signature::rfc1123(now);
        let auth = signature::authorization(&self.workspace_id, &self.key, req.body.len(), &date);
        req.headers
            .insert(X_MS_DATE, HeaderValue::from_str(&date).expect("ASCII date"));
        req.headers.insert(
            AUTHORIZATION,
            secret_header(&auth).expect("base64 and a validated workspace id"),
        );
    }
}

impl SiemAdapter for SentinelAdapter {
    fn config(&self) -> &SiemConfig {
        &self.config
    }

    fn transform_event(&self, event: &ScanEvent) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        write_record(event, &mut out);
        out
    }

    fn encode(&self, batch: &[ScanEvent]) -> EncodedBatch {
        let now = (self.clock)();
        let max = self.max_bytes;
        pack_with(
            batch.len(),
            |i, out| write_record(&batch[i], out),
            JSON_ARRAY,
            max,
            |n| format!("record is {n} bytes, over the Data Collector limit of {max} bytes"),
            |_, body| {
                let mut req = post(&self.uri, &self.headers, body, false);
                self.sign(&mut req, now);
                req
            },
        )
    }

    fn send<'a>(
        &'a self,
        request: &'a EncodedRequest,
    ) -> BoxFuture<'a, Result<Response, TransportError>> {
        Box::pin(async move {
            match &request.payload {
                Payload::Http(req) => {
                    let mut req = req.clone();
                    self.sign(&mut req, (self.clock)());
                    self.transport.send(&req).await.map(Response::Http)
                }
                Payload::Syslog(_) => Err(TransportError::Io(
                    "Sentinel adapter cannot send a syslog payload".into(),
                )),
            }
        })
    }

    fn classify(
        &self,
        request: &EncodedRequest,
        answer: &Result<Response, TransportError>,
    ) -> Outcome {
        let body_len = match &request.payload {
            Payload::Http(r) => r.body.len(),
            Payload::Syslog(_) => 0,
        };
        match answer {
            Ok(Response::Http(resp)) => classify_data_collector(resp, body_len),
            Ok(Response::SyslogWritten) => Outcome::Misconfigured {
                reason: "Sentinel adapter got a syslog answer".into(),
            },
            Err(e) => classify_transport_error(e),
        }
    }
}
