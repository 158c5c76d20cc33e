//! ArcSight SmartConnector over HTTP (protocols.md §7.7): CEF lines (the [`crate::cef`]
//! encoder, `\n` after each) POSTed with `Authorization: Bearer <token>` and the
//! connector id in the header [`CONNECTOR_HEADER`] on every request.
//! Classification: [`crate::cef::classify_cef_http`].

use std::time::Duration;

use http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use http::HeaderMap;

use crate::adapter::{BoxFuture, EncodedBatch, SiemAdapter};
use crate::cef::{classify_cef_http, CefHttpBuilder, CefSettings, DEVICE_VERSION};
use crate::config::{ConfigError, SiemConfig, SiemOptions};
use crate::event::ScanEvent;
use crate::http_common::{classify_transport_error, secret_header};
use crate::outcome::Outcome;
use crate::request::{EncodedRequest, Payload, Response, TransportError};
use crate::transport::HttpTransport;

/// The header carrying `smart_connector_id`.
pub const CONNECTOR_HEADER: &str = "x-arcsight-smart-connector-id";

#[derive(Debug)]
pub struct ArcsightAdapter {
    config: SiemConfig,
    builder: CefHttpBuilder,
    transport: HttpTransport,
}

impl ArcsightAdapter {
    pub fn new(config: SiemConfig) -> Result<ArcsightAdapter, ConfigError> {
        config.validate()?;
        let SiemOptions::Arcsight(o) = &config.extra else {
            return Err(ConfigError::OptionsMismatch {
                siem_type: crate::config::SiemType::Arcsight,
                options: config.siem_type,
            });
        };
        let mut headers = HeaderMap::new();
        let token = config.auth_token.expose().trim();
        headers.insert(AUTHORIZATION, secret_header(&format!("Bearer {token}"))?);
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(
            HeaderName::from_static(CONNECTOR_HEADER),
            HeaderValue::from_str(o.smart_connector_id.trim()).map_err(|_| {
                ConfigError::InvalidOption {
                    option: "smart_connector_id",
                    reason: "not usable as an HTTP header value".into(),
                }
            })?,
        );
        let builder = CefHttpBuilder {
            settings: CefSettings {
                device_vendor: o.device_vendor.clone(),
                device_product: o.device_product.clone(),
                device_version: DEVICE_VERSION.into(),
                src_field: o.src_field,
            },
            uri: config.uri()?,
            headers,
            max_bytes: o.max_request_bytes,
        };
        let transport =
            HttpTransport::new(&config.tls, Duration::from_secs(config.timeout_seconds))?;
        Ok(ArcsightAdapter {
            config,
            builder,
            transport,
        })
    }
}

impl SiemAdapter for ArcsightAdapter {
    fn config(&self) -> &SiemConfig {
        &self.config
    }

    fn transform_event(&self, event: &ScanEvent) -> Vec<u8> {
        self.builder.line(event)
    }

    fn encode(&self, batch: &[ScanEvent]) -> EncodedBatch {
        self.builder.build(batch)
    }

    fn send<'a>(
        &'a self,
        request: &'a EncodedRequest,
    ) -> BoxFuture<'a, Result<Response, TransportError>> {
        Box::pin(async move {
            match &request.payload {
                Payload::Http(req) => self.transport.send(req).await.map(Response::Http),
                Payload::Syslog(_) => Err(TransportError::Io(
                    "ArcSight adapter cannot send a syslog payload".into(),
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
            Ok(Response::Http(resp)) => classify_cef_http(resp),
            Ok(Response::SyslogWritten) => Outcome::Misconfigured {
                reason: "ArcSight adapter got a syslog answer".into(),
            },
            Err(e) => classify_transport_error(e),
        }
    }
}
