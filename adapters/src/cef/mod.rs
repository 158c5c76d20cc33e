//! Generic CEF (protocols.md §4, §7.5–7.7): over HTTP (one CEF line per event, `\n`
//! after each, `Authorization: Bearer` when a token is set) or over syslog (UDP, TCP,
//! TLS; RFC 5424 or RFC 3164 header, PRI = facility × 8 + syslog severity).
//!
//! Stages: [`escape`], [`encoder`] (the line), [`retry`] (HTTP classification);
//! syslog headers come from [`crate::syslog`].

pub mod encoder;
pub mod escape;
pub mod retry;
#[cfg(test)]
mod tests;

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, Uri};

use crate::adapter::{BoxFuture, EncodedBatch, SiemAdapter};
use crate::config::{CefMode, CefOptions, ConfigError, SiemConfig, SiemOptions, SyslogFormat};
use crate::event::{Rfc3339Ms, ScanEvent};
use crate::http_common::{
    classify_syslog_transport_error, classify_transport_error, pack_with, post, secret_header,
    CONCAT,
};
use crate::outcome::Outcome;
use crate::request::{EncodedRequest, Payload, Response, TransportError};
use crate::syslog::{pri, write_rfc3164, write_rfc5424, Rfc3164, Rfc5424};
use crate::transport::{HttpTransport, SyslogTarget, SyslogTransport};

pub use self::encoder::{cef_line, write_cef, CefSettings, DEVICE_VERSION};
pub use self::retry::classify_cef_http;

/// CEF lines over HTTP: shared with ArcSight.
#[derive(Debug, Clone)]
pub struct CefHttpBuilder {
    pub settings: CefSettings,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub max_bytes: usize,
}

impl CefHttpBuilder {
    pub fn line(&self, event: &ScanEvent) -> Vec<u8> {
        let mut s = cef_line(&self.settings, event);
        s.push('\n');
        s.into_bytes()
    }

    pub fn build(&self, batch: &[ScanEvent]) -> EncodedBatch {
        let max = self.max_bytes;
        // One line buffer for the whole batch: pack_with promises no allocation per event.
        let mut line = String::with_capacity(384);
        pack_with(
            batch.len(),
            |i, out| {
                line.clear();
                write_cef(&self.settings, &batch[i], &mut line);
                out.extend_from_slice(line.as_bytes());
                out.push(b'\n');
            },
            CONCAT,
            max,
            |n| format!("CEF line is {n} bytes, over the request limit of {max} bytes"),
            |_, body| post(&self.uri, &self.headers, body, false),
        )
    }
}

/// Syslog message settings.
#[derive(Debug, Clone)]
pub struct CefSyslogFormatter {
    pub settings: CefSettings,
    pub format: SyslogFormat,
    pub facility: u8,
    pub hostname: String,
    pub app_name: String,
    /// Largest message (UDP: the datagram limit). A longer one is made to fit by shortening
    /// the CEF values least needed (see [`write_cef_within`]), so that the transport's cut
    /// of the message's end, a last resort, does not take the event id or the customer.
    pub max_message: Option<usize>,
}

/// Set once a message had to be shortened (warned about once per process).
static SHORTENED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl CefSyslogFormatter {
    /// One unframed syslog message carrying the event's CEF line.
    pub fn message(&self, event: &ScanEvent) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        self.write_message(event, &mut String::with_capacity(384), &mut out);
        out
    }

    /// [`CefSyslogFormatter::message`] appended to `out`; `cef` is scratch space for the
    /// line, so that a batch's messages cost no allocation each.
    pub fn write_message(&self, event: &ScanEvent, cef: &mut String, out: &mut Vec<u8>) {
        let start = out.len();
        cef.clear();
        write_cef(&self.settings, event, cef);
        self.wrap(event, cef, out);
        let len = out.len() - start;
        let Some(max) = self.max_message.filter(|max| len > *max) else {
            return;
        };
        let header = len - cef.len();
        cef.clear();
        let fits =
            encoder::write_cef_within(&self.settings, event, max.saturating_sub(header), cef);
        if !SHORTENED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(event_id = %event.event_id, max_bytes = max, fits, "a CEF syslog message was over the datagram limit: rule ids, families and other long values were shortened to fit (logged once; raise max_datagram or use TCP/TLS to keep them whole)");
        } else {
            tracing::debug!(event_id = %event.event_id, max_bytes = max, fits, "CEF syslog message shortened to fit the datagram limit");
        }
        out.truncate(start);
        self.wrap(event, cef, out);
    }

    fn wrap(&self, event: &ScanEvent, cef: &str, out: &mut Vec<u8>) {
        let pri = pri(self.facility, event.severity.map_or(6, |s| s.syslog()));
        match self.format {
            SyslogFormat::Rfc5424 => write_rfc5424(
                &Rfc5424 {
                    pri,
                    timestamp: Rfc3339Ms::new(event.timestamp_ms).as_str(),
                    hostname: &self.hostname,
                    app_name: &self.app_name,
                    procid: "-",
                    msgid: "-",
                    structured_data: &[],
                    msg: cef.as_bytes(),
                    bom: false,
                },
                out,
            ),
            SyslogFormat::Rfc3164 => write_rfc3164(
                &Rfc3164 {
                    pri,
                    time: event.datetime(),
                    hostname: &self.hostname,
                    tag: &self.app_name,
                    pid: None,
                    msg: cef.as_bytes(),
                },
                out,
            ),
        }
    }
}

#[derive(Debug)]
enum Mode {
    Http {
        builder: CefHttpBuilder,
        transport: HttpTransport,
    },
    Syslog {
        formatter: CefSyslogFormatter,
        transport: SyslogTransport,
    },
}

/// A generic CEF destination.
#[derive(Debug)]
pub struct CefAdapter {
    config: SiemConfig,
    mode: Mode,
}

impl CefAdapter {
    pub fn new(config: SiemConfig) -> Result<CefAdapter, ConfigError> {
        config.validate()?;
        let SiemOptions::Cef(o) = &config.extra else {
            return Err(ConfigError::OptionsMismatch {
                siem_type: crate::config::SiemType::Cef,
                options: config.siem_type,
            });
        };
        let settings = settings(o);
        let timeout = Duration::from_secs(config.timeout_seconds);
        let mode = match config.cef_mode()? {
            CefMode::Http => {
                let mut headers = HeaderMap::new();
                let token = config.auth_token.expose().trim();
                if !token.is_empty() {
                    headers.insert(AUTHORIZATION, secret_header(&format!("Bearer {token}"))?);
                }
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                Mode::Http {
                    builder: CefHttpBuilder {
                        settings,
                        uri: config.uri()?,
                        headers,
                        max_bytes: o.max_request_bytes,
                    },
                    transport: HttpTransport::new(&config.tls, timeout)?,
                }
            }
            CefMode::Syslog(protocol) => {
                let uri = config.uri()?;
                let host = uri.host().unwrap_or_default().to_string();
                let target = SyslogTarget {
                    host,
                    port: config.syslog_port(protocol),
                    protocol,
                    framing: o.framing.0,
                    max_datagram: o.max_datagram,
                    timeout,
                };
                let transport = SyslogTransport::new(target, &config.tls)?;
                Mode::Syslog {
                    formatter: CefSyslogFormatter {
                        settings,
                        format: o.syslog_format,
                        facility: o.facility,
                        hostname: o.hostname.clone().unwrap_or_else(crate::hostname::hostname),
                        app_name: o.app_name.clone(),
                        max_message: transport.max_datagram(),
                    },
                    transport,
                }
            }
        };
        Ok(CefAdapter { config, mode })
    }
}

fn settings(o: &CefOptions) -> CefSettings {
    CefSettings {
        device_vendor: o.device_vendor.clone(),
        device_product: o.device_product.clone(),
        device_version: DEVICE_VERSION.into(),
        src_field: o.src_field,
    }
}

impl SiemAdapter for CefAdapter {
    fn config(&self) -> &SiemConfig {
        &self.config
    }

    fn transform_event(&self, event: &ScanEvent) -> Vec<u8> {
        match &self.mode {
            Mode::Http { builder, .. } => builder.line(event),
            Mode::Syslog { formatter, .. } => formatter.message(event),
        }
    }

    fn encode(&self, batch: &[ScanEvent]) -> EncodedBatch {
        match &self.mode {
            Mode::Http { builder, .. } => builder.build(batch),
            Mode::Syslog { formatter, .. } => {
                let mut out = EncodedBatch::default();
                if !batch.is_empty() {
                    // The batch's messages in one buffer, handed out as slices of it.
                    let mut buf = Vec::with_capacity(batch.len() * 512);
                    let mut ends = Vec::with_capacity(batch.len());
                    let mut cef = String::with_capacity(384);
                    for event in batch {
                        formatter.write_message(event, &mut cef, &mut buf);
                        ends.push(buf.len());
                    }
                    let buf = Bytes::from(buf);
                    let starts = std::iter::once(0).chain(ends.iter().copied());
                    let messages = starts.zip(&ends).map(|(a, &b)| buf.slice(a..b)).collect();
                    out.requests.push(EncodedRequest {
                        events: 0..batch.len(),
                        payload: Payload::Syslog(messages),
                    });
                }
                out
            }
        }
    }

    fn send<'a>(
        &'a self,
        request: &'a EncodedRequest,
    ) -> BoxFuture<'a, Result<Response, TransportError>> {
        Box::pin(async move {
            match (&self.mode, &request.payload) {
                (Mode::Http { transport, .. }, Payload::Http(req)) => {
                    transport.send(req).await.map(Response::Http)
                }
                (Mode::Syslog { transport, .. }, Payload::Syslog(messages)) => transport
                    .send(messages)
                    .await
                    .map(|()| Response::SyslogWritten),
                _ => Err(TransportError::Io(
                    "payload does not match the CEF transport".into(),
                )),
            }
        })
    }

    fn classify(
        &self,
        _request: &EncodedRequest,
        answer: &Result<Response, TransportError>,
    ) -> Outcome {
        let syslog = matches!(self.mode, Mode::Syslog { .. });
        match answer {
            Ok(Response::Http(resp)) => classify_cef_http(resp),
            Ok(Response::SyslogWritten) => Outcome::Delivered,
            Err(e) if syslog => classify_syslog_transport_error(e),
            Err(e) => classify_transport_error(e),
        }
    }
}
