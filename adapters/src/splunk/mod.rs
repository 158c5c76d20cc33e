//! Splunk HTTP Event Collector (protocols.md §1, §7.2). LogScale reuses all of it
//! (see [`crate::logscale`]) with its own auth scheme, defaults and classification.
//!
//! Stages: [`encoder`] (envelopes), [`request`] (batching into size-bounded, optionally
//! gzipped requests), [`retry`] (answer classification), [`ack`] (indexer
//! acknowledgement: channel header, ack ids, ack polls).

pub mod ack;
#[cfg(test)]
mod ack_tests;
pub mod encoder;
pub mod request;
pub mod retry;
#[cfg(test)]
mod tests;

use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, Uri};

use crate::adapter::{BoxFuture, EncodedBatch, SiemAdapter};
use crate::config::{Compression, ConfigError, SiemConfig, SiemOptions};
use crate::event::{JsonEvent, ScanEvent};
use crate::http_common::{classify_transport_error, secret_header, with_default_path};
use crate::outcome::Outcome;
use crate::request::{EncodedRequest, Payload, Response, TransportError};
use crate::transport::HttpTransport;

pub use self::encoder::{envelope, hec_time, write_envelope, HecMeta};
pub use self::retry::{classify_hec, HecReply};

/// Default API path for Splunk when the URL has none.
pub const SPLUNK_PATH: &str = "/services/collector/event";

/// Which HEC service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HecFlavor {
    /// `Authorization: Splunk <token>`, Splunk's classification table.
    Splunk,
    /// `Authorization: Bearer <token>`, LogScale's classification.
    Logscale,
}

/// An HEC destination (Splunk or LogScale).
#[derive(Debug)]
pub struct HecAdapter {
    config: SiemConfig,
    flavor: HecFlavor,
    builder: request::HecRequestBuilder,
    transport: HttpTransport,
    /// Set when the Splunk destination has indexer acknowledgement on.
    ack: Option<ack::AckSettings>,
    /// A load balancer's session cookies, echoed when acks are on (see `StickyCookies`).
    cookies: ack::StickyCookies,
}

impl HecAdapter {
    /// Builds a Splunk or CrowdStrike adapter from a validated config.
    pub fn new(config: SiemConfig) -> Result<HecAdapter, ConfigError> {
        config.validate()?;
        let uri = config.uri()?;
        let token = config.auth_token.expose().trim().to_string();
        let mut ack_settings = None;
        let mut headers = HeaderMap::new();
        let (flavor, meta, compression, max_bytes, uri, auth) = match &config.extra {
            SiemOptions::Splunk(o) => {
                let uri = with_default_path(&uri, SPLUNK_PATH);
                if let (true, Some(channel)) = (o.ack, &o.channel) {
                    // Validated as a GUID, so it is a valid header value and query.
                    let value =
                        HeaderValue::from_str(channel).map_err(|_| ConfigError::InvalidOption {
                            option: "channel",
                            reason: "not a valid header value".into(),
                        })?;
                    headers.insert(ack::CHANNEL_HEADER, value);
                    ack_settings = Some(ack::AckSettings {
                        uri: ack::ack_uri(&uri, channel).ok_or(ConfigError::InvalidOption {
                            option: "channel",
                            reason: "cannot build the ack URL".into(),
                        })?,
                        interval: std::time::Duration::from_secs(o.ack_interval_seconds),
                        timeout: std::time::Duration::from_secs(o.ack_timeout_seconds),
                        max_pending: o.ack_max_pending,
                    });
                }
                (
                    HecFlavor::Splunk,
                    HecMeta {
                        host: o.host.clone().unwrap_or_else(crate::hostname::hostname),
                        source: o.source.clone(),
                        sourcetype: Some(o.sourcetype.clone()),
                        index: o.index.clone(),
                    },
                    o.compression,
                    o.max_request_bytes,
                    uri,
                    format!("Splunk {token}"),
                )
            }
            SiemOptions::Crowdstrike(o) => (
                HecFlavor::Logscale,
                HecMeta {
                    host: o.host.clone().unwrap_or_else(crate::hostname::hostname),
                    source: o.source.clone(),
                    sourcetype: o.parser.clone(),
                    index: o.repository.clone(),
                },
                o.compression,
                o.max_request_bytes,
                with_default_path(&uri, crate::logscale::LOGSCALE_PATH),
                format!("Bearer {token}"),
            ),
            _ => {
                return Err(ConfigError::OptionsMismatch {
                    siem_type: crate::config::SiemType::Splunk,
                    options: config.siem_type,
                })
            }
        };
        headers.insert(AUTHORIZATION, secret_header(&auth)?);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let builder = request::HecRequestBuilder {
            meta,
            uri,
            headers,
            compress: compression == Compression::Gzip,
            max_bytes,
        };
        let transport = HttpTransport::new(
            &config.tls,
            std::time::Duration::from_secs(config.timeout_seconds),
        )?;
        Ok(HecAdapter {
            config,
            flavor,
            builder,
            transport,
            ack: ack_settings,
            cookies: ack::StickyCookies::default(),
        })
    }

    /// Sends `request`; with indexer acknowledgement on, with the balancer's cookies kept
    /// from earlier answers, and keeps the ones this answer sets.
    pub(crate) async fn send_sticky(
        &self,
        request: &crate::request::HttpRequest,
    ) -> Result<crate::request::HttpResponse, TransportError> {
        if self.ack.is_none() {
            return self.transport.send(request).await;
        }
        let with_cookies = self.cookies.apply(request);
        let answer = self
            .transport
            .send(with_cookies.as_ref().unwrap_or(request))
            .await;
        if let Ok(resp) = &answer {
            self.cookies.remember(&resp.headers);
        }
        answer
    }

    pub fn flavor(&self) -> HecFlavor {
        self.flavor
    }

    /// The request target (with the default API path applied).
    pub fn uri(&self) -> &Uri {
        &self.builder.uri
    }

    pub fn meta(&self) -> &HecMeta {
        &self.builder.meta
    }
}

impl SiemAdapter for HecAdapter {
    fn config(&self) -> &SiemConfig {
        &self.config
    }

    fn indexer_ack(&self) -> Option<&dyn ack::IndexerAck> {
        if self.ack.is_some() {
            Some(self)
        } else {
            None
        }
    }

    fn transform_event(&self, event: &ScanEvent) -> Vec<u8> {
        envelope(&self.builder.meta, event)
    }

    fn encode(&self, batch: &[ScanEvent]) -> EncodedBatch {
        self.builder.build(batch)
    }

    fn embeds_json(&self) -> bool {
        true
    }

    fn encode_json(&self, batch: &[JsonEvent]) -> EncodedBatch {
        self.builder.build_json(batch)
    }

    fn send<'a>(
        &'a self,
        request: &'a EncodedRequest,
    ) -> BoxFuture<'a, Result<Response, TransportError>> {
        Box::pin(async move {
            match &request.payload {
                Payload::Http(req) => self.send_sticky(req).await.map(Response::Http),
                Payload::Syslog(_) => Err(TransportError::Io(
                    "HEC adapter cannot send a syslog payload".into(),
                )),
            }
        })
    }

    fn classify(
        &self,
        _request: &EncodedRequest,
        answer: &Result<Response, TransportError>,
    ) -> Outcome {
        match answer {
            Ok(Response::Http(resp)) => match self.flavor {
                HecFlavor::Splunk if self.ack.is_some() => {
                    let outcome = classify_hec(resp);
                    if outcome == Outcome::Delivered && ack::parse_ack_id(&resp.body).is_none() {
                        // Without an id nothing can ever confirm these events: keep them
                        // queued and make the operator fix the token or the config.
                        return Outcome::Misconfigured {
                            reason: format!(
                                "Splunk accepted the request but sent no ackId (HTTP {}): indexer acknowledgement is off for this token; turn on useACK for the token, or configure the destination without --ack",
                                resp.status.as_u16()
                            ),
                        };
                    }
                    outcome
                }
                HecFlavor::Splunk => classify_hec(resp),
                HecFlavor::Logscale => crate::logscale::classify_logscale(resp),
            },
            Ok(Response::SyslogWritten) => Outcome::Misconfigured {
                reason: "HEC adapter got a syslog answer".into(),
            },
            Err(e) => classify_transport_error(e),
        }
    }
}
