//! [`SiemConfig::validate`] and the derived settings adapters need.

use base64::Engine as _;
use http::Uri;

use super::{CefOptions, CefTransport, SiemConfig, SiemOptions, SiemType};
use crate::transport::{SyslogFraming, SyslogProtocol, TransportSetupError};

/// A destination configuration that cannot work. Never contains the token.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown SIEM type {0:?} (expected splunk, crowdstrike, sentinel, arcsight or cef)")]
    UnknownType(String),
    #[error("endpoint_url {url:?} is not a valid URL: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("endpoint_url scheme {scheme:?} does not fit a {siem_type} destination (expected {expected})")]
    SchemeMismatch {
        siem_type: SiemType,
        scheme: String,
        expected: &'static str,
    },
    #[error("{siem_type} destination needs the option `{option}`")]
    MissingOption {
        siem_type: SiemType,
        option: &'static str,
    },
    #[error("option `{option}` is invalid: {reason}")]
    InvalidOption {
        option: &'static str,
        reason: String,
    },
    #[error("{siem_type} destination needs an auth token")]
    MissingToken { siem_type: SiemType },
    #[error("the auth token is invalid: {0}")]
    InvalidToken(&'static str),
    #[error("options are for {options} but siem_type is {siem_type}")]
    OptionsMismatch {
        siem_type: SiemType,
        options: SiemType,
    },
    #[error("cannot set up the transport: {0}")]
    Transport(#[from] TransportSetupError),
}

/// Upper bounds of the batching and timing settings. Past them a destination would stall
/// without a word (a flush interval of `u64::MAX`) or hold absurd amounts in memory.
pub mod limits {
    pub const MAX_BATCH_SIZE: usize = 100_000;
    pub const MAX_FLUSH_INTERVAL_SECONDS: u64 = 3_600;
    pub const MAX_TIMEOUT_SECONDS: u64 = 3_600;
    pub const MAX_RETRY_COUNT: u32 = 100;
    pub const MAX_ACK_INTERVAL_SECONDS: u64 = 3_600;
    pub const MAX_ACK_TIMEOUT_SECONDS: u64 = 86_400;
    pub const MAX_ACK_MAX_PENDING: usize = 100_000;
}

pub(crate) fn invalid(option: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidOption {
        option,
        reason: reason.into(),
    }
}

/// Effective CEF transport settings after applying URL and defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CefMode {
    Http,
    Syslog(SyslogProtocol),
}

impl SiemConfig {
    /// Checks everything that can be checked without I/O.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.extra.siem_type() != self.siem_type {
            return Err(ConfigError::OptionsMismatch {
                siem_type: self.siem_type,
                options: self.extra.siem_type(),
            });
        }
        let uri = self.uri()?;
        let scheme = uri.scheme_str().unwrap_or_default().to_ascii_lowercase();
        let http = scheme == "http" || scheme == "https";
        if !(1..=limits::MAX_BATCH_SIZE).contains(&self.batch_size) {
            return Err(invalid(
                "batch_size",
                format!("must be 1 to {}", limits::MAX_BATCH_SIZE),
            ));
        }
        if !(1..=limits::MAX_TIMEOUT_SECONDS).contains(&self.timeout_seconds) {
            return Err(invalid(
                "timeout_seconds",
                format!("must be 1 to {}", limits::MAX_TIMEOUT_SECONDS),
            ));
        }
        if self.flush_interval_seconds > limits::MAX_FLUSH_INTERVAL_SECONDS {
            return Err(invalid(
                "flush_interval_seconds",
                format!("must be 0 to {}", limits::MAX_FLUSH_INTERVAL_SECONDS),
            ));
        }
        if self.retry_count > limits::MAX_RETRY_COUNT {
            return Err(invalid(
                "retry_count",
                format!("must be 0 to {}", limits::MAX_RETRY_COUNT),
            ));
        }
        let need_http = |expected| {
            if http {
                Ok(())
            } else {
                Err(ConfigError::SchemeMismatch {
                    siem_type: self.siem_type,
                    scheme: scheme.clone(),
                    expected,
                })
            }
        };
        let need_token = || {
            if self.auth_token.expose().trim().is_empty() {
                Err(ConfigError::MissingToken {
                    siem_type: self.siem_type,
                })
            } else {
                Ok(())
            }
        };
        match &self.extra {
            SiemOptions::Splunk(o) => {
                need_http("https:// or http://")?;
                need_token()?;
                header_safe("index", o.index.as_deref())?;
                header_safe("host", o.host.as_deref())?;
                positive("max_request_bytes", o.max_request_bytes)?;
                crate::splunk::ack::validate_ack(o)?;
            }
            SiemOptions::Crowdstrike(o) => {
                need_http("https:// or http://")?;
                need_token()?;
                positive("max_request_bytes", o.max_request_bytes)?;
            }
            SiemOptions::Sentinel(o) if o.api == super::SentinelApi::LogsIngestion => {
                need_http("https:// or http://")?;
                need_token()?;
                crate::sentinel_ingestion::validate_options(o)?;
            }
            SiemOptions::Sentinel(o) => {
                need_http("https:// or http://")?;
                if o.compression == Some(super::Compression::Gzip) {
                    return Err(invalid(
                        "compression",
                        "the Data Collector API signs the exact body and does not take gzip; \
                         use `none`, or the Logs Ingestion API (--api logs-ingestion)",
                    ));
                }
                if o.workspace_id.is_empty() {
                    return Err(ConfigError::MissingOption {
                        siem_type: self.siem_type,
                        option: "workspace_id",
                    });
                }
                if !o
                    .workspace_id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                {
                    return Err(invalid(
                        "workspace_id",
                        "only letters, digits and '-' are allowed (a GUID)",
                    ));
                }
                if o.log_type.is_empty() {
                    return Err(ConfigError::MissingOption {
                        siem_type: self.siem_type,
                        option: "log_type",
                    });
                }
                if o.log_type.len() > 100
                    || !o
                        .log_type
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    return Err(invalid(
                        "log_type",
                        "must be 1 to 100 letters, digits or '_'",
                    ));
                }
                need_token()?;
                self.sentinel_key()?;
            }
            SiemOptions::Arcsight(o) => {
                need_http("https:// or http://")?;
                need_token()?;
                if o.smart_connector_id.trim().is_empty() {
                    return Err(ConfigError::MissingOption {
                        siem_type: self.siem_type,
                        option: "smart_connector_id",
                    });
                }
                header_safe("smart_connector_id", Some(&o.smart_connector_id))?;
                positive("max_request_bytes", o.max_request_bytes)?;
            }
            SiemOptions::Cef(o) => self.validate_cef(o, &scheme)?,
        }
        Ok(())
    }

    fn validate_cef(&self, o: &CefOptions, scheme: &str) -> Result<(), ConfigError> {
        if o.facility > 23 {
            return Err(invalid("facility", "must be 0 to 23 (16 = local0)"));
        }
        match self.cef_mode()? {
            CefMode::Http => {
                if o.tls {
                    return Err(invalid(
                        "tls",
                        "applies to syslog over TCP only; use an https:// URL for HTTP",
                    ));
                }
                positive("max_request_bytes", o.max_request_bytes)?;
            }
            CefMode::Syslog(protocol) => {
                if scheme != "syslog" {
                    return Err(ConfigError::SchemeMismatch {
                        siem_type: self.siem_type,
                        scheme: scheme.to_string(),
                        expected: "syslog:// for the udp and tcp transports",
                    });
                }
                if protocol == SyslogProtocol::Tls && o.framing.0 != SyslogFraming::OctetCounting {
                    return Err(invalid(
                        "framing",
                        "syslog over TLS requires octet-counting (RFC 5425)",
                    ));
                }
                if protocol == SyslogProtocol::Udp && o.max_datagram < 480 {
                    return Err(invalid("max_datagram", "must be at least 480 bytes"));
                }
                if let Some(h) = &o.hostname {
                    printable("hostname", h)?;
                }
                printable("app_name", &o.app_name)?;
            }
        }
        Ok(())
    }

    /// The endpoint as an `http::Uri` (must have a scheme and a host).
    pub fn uri(&self) -> Result<Uri, ConfigError> {
        let bad = |reason: &str| ConfigError::InvalidUrl {
            url: super::redact_url(&self.endpoint_url),
            reason: reason.to_string(),
        };
        let uri: Uri = self
            .endpoint_url
            .trim()
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
        if uri.scheme().is_none() {
            return Err(bad("missing scheme (https://, http:// or syslog://)"));
        }
        match uri.host() {
            Some(h) if !h.is_empty() => {}
            _ => return Err(bad("missing host")),
        }
        Ok(uri)
    }

    /// How CEF travels: the explicit `transport` option, else the URL scheme
    /// (`syslog://` → UDP, unless `tls` → TLS), and `tcp` + `tls` → TLS.
    pub fn cef_mode(&self) -> Result<CefMode, ConfigError> {
        let SiemOptions::Cef(o) = &self.extra else {
            return Ok(CefMode::Http);
        };
        let scheme = self
            .uri()?
            .scheme_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let transport = match (o.transport, scheme.as_str()) {
            (Some(t), _) => t,
            (None, "syslog") if o.tls => CefTransport::Tcp,
            (None, "syslog") => CefTransport::Udp,
            (None, "http" | "https") => CefTransport::Http,
            (None, other) => {
                return Err(ConfigError::SchemeMismatch {
                    siem_type: SiemType::Cef,
                    scheme: other.to_string(),
                    expected: "https://, http:// or syslog://",
                })
            }
        };
        Ok(match transport {
            CefTransport::Http => {
                if scheme != "http" && scheme != "https" {
                    return Err(ConfigError::SchemeMismatch {
                        siem_type: SiemType::Cef,
                        scheme,
                        expected: "https:// or http:// for the http transport",
                    });
                }
                CefMode::Http
            }
            CefTransport::Udp if o.tls => {
                return Err(invalid("tls", "is only available with the tcp transport"))
            }
            CefTransport::Udp => CefMode::Syslog(SyslogProtocol::Udp),
            CefTransport::Tcp if o.tls => CefMode::Syslog(SyslogProtocol::Tls),
            CefTransport::Tcp => CefMode::Syslog(SyslogProtocol::Tcp),
        })
    }

    /// Syslog port: option, else URL port, else 514 (UDP) / 6514 (TCP, TLS).
    pub fn syslog_port(&self, protocol: SyslogProtocol) -> u16 {
        let from_option = match &self.extra {
            SiemOptions::Cef(o) => o.port,
            _ => None,
        };
        from_option
            .or_else(|| self.uri().ok().and_then(|u| u.port_u16()))
            .unwrap_or(match protocol {
                SyslogProtocol::Udp => 514,
                SyslogProtocol::Tcp | SyslogProtocol::Tls => 6514,
            })
    }

    /// The decoded Sentinel shared key.
    pub fn sentinel_key(&self) -> Result<Vec<u8>, ConfigError> {
        let key = base64::engine::general_purpose::STANDARD
            .decode(self.auth_token.expose().trim())
            .map_err(|_| {
                ConfigError::InvalidToken("the Sentinel shared key must be valid base64")
            })?;
        if key.is_empty() {
            return Err(ConfigError::InvalidToken(
                "the Sentinel shared key is empty",
            ));
        }
        Ok(key)
    }
}

fn positive(option: &'static str, v: usize) -> Result<(), ConfigError> {
    if v == 0 {
        Err(invalid(option, "must be greater than zero"))
    } else {
        Ok(())
    }
}

fn header_safe(option: &'static str, v: Option<&str>) -> Result<(), ConfigError> {
    match v {
        Some(s) if s.chars().any(char::is_control) => {
            Err(invalid(option, "must not contain control characters"))
        }
        _ => Ok(()),
    }
}

fn printable(option: &'static str, v: &str) -> Result<(), ConfigError> {
    if v.is_empty() || !v.bytes().all(|b| (33..=126).contains(&b)) {
        Err(invalid(
            option,
            "must be printable ASCII without spaces (RFC 5424 header field)",
        ))
    } else {
        Ok(())
    }
}
