//! Destination configuration: [`SiemConfig`], its typed per-type options, validation.
//!
//! Validation happens at construction ([`SiemConfig::new`], [`SiemConfig::validate`],
//! `create_siem_adapter`). Errors name the option at fault and never include the token.

mod options;
mod secret;
#[cfg(test)]
mod tests;
mod validate;
pub(crate) use validate::invalid;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use self::options::*;
pub use self::secret::Secret;
pub use self::validate::{limits, CefMode, ConfigError};
use crate::transport::TlsOptions;

/// The kind of destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SiemType {
    Splunk,
    Crowdstrike,
    Sentinel,
    Arcsight,
    Cef,
}

impl SiemType {
    pub fn as_str(self) -> &'static str {
        match self {
            SiemType::Splunk => "splunk",
            SiemType::Crowdstrike => "crowdstrike",
            SiemType::Sentinel => "sentinel",
            SiemType::Arcsight => "arcsight",
            SiemType::Cef => "cef",
        }
    }
}

impl fmt::Display for SiemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SiemType {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<SiemType, ConfigError> {
        [
            SiemType::Splunk,
            SiemType::Crowdstrike,
            SiemType::Sentinel,
            SiemType::Arcsight,
            SiemType::Cef,
        ]
        .into_iter()
        .find(|t| t.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| ConfigError::UnknownType(s.to_string()))
    }
}

/// One destination. Serializes as
/// `{"siem_type":"splunk","endpoint_url":..,"auth_token":..,"extra":{..per type..},
///   "batch_size":100,"flush_interval_seconds":10,"retry_count":3,"timeout_seconds":30,
///   "enabled":true,"tls":{..}}` and round-trips.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawSiemConfig", into = "RawSiemConfig")]
pub struct SiemConfig {
    pub siem_type: SiemType,
    /// The URL as configured (validated with `http::Uri`; `syslog://host[:port]` for CEF
    /// over syslog). Adapters add the API path when the URL has none.
    pub endpoint_url: String,
    /// HEC token, ingest token, workspace shared key (base64) or bearer token.
    pub auth_token: Secret,
    /// Per-type options; its variant always matches `siem_type`.
    pub extra: SiemOptions,
    /// Events per request (default 100).
    pub batch_size: usize,
    /// Seconds to wait for a full batch (default 10).
    pub flush_interval_seconds: u64,
    /// Quick retries before the destination backs off (default 3).
    pub retry_count: u32,
    /// Seconds one request may take (default 30).
    pub timeout_seconds: u64,
    /// Disabled destinations keep queueing and deliver when enabled (default true).
    pub enabled: bool,
    pub tls: TlsOptions,
}

impl SiemConfig {
    /// A config with every default for `siem_type`, validated. Types with required
    /// options (sentinel, arcsight) need [`SiemConfig::with_options`] instead.
    pub fn new(
        siem_type: SiemType,
        endpoint_url: &str,
        auth_token: impl Into<Secret>,
    ) -> Result<SiemConfig, ConfigError> {
        Self::with_options(
            endpoint_url,
            auth_token,
            SiemOptions::default_for(siem_type),
        )
    }

    /// A config for the type of `options`, validated.
    pub fn with_options(
        endpoint_url: &str,
        auth_token: impl Into<Secret>,
        options: SiemOptions,
    ) -> Result<SiemConfig, ConfigError> {
        let config = Self::unvalidated(endpoint_url, auth_token, options);
        config.validate()?;
        Ok(config)
    }

    /// A config built without validation (for builders that fill it in step by step).
    pub fn unvalidated(
        endpoint_url: &str,
        auth_token: impl Into<Secret>,
        options: SiemOptions,
    ) -> SiemConfig {
        SiemConfig {
            siem_type: options.siem_type(),
            endpoint_url: endpoint_url.to_string(),
            auth_token: auth_token.into(),
            extra: options,
            batch_size: 100,
            flush_interval_seconds: 10,
            retry_count: 3,
            timeout_seconds: 30,
            enabled: true,
            tls: TlsOptions::default(),
        }
    }

    /// Which Sentinel API a Sentinel destination uses; `None` for other destinations.
    pub fn sentinel_api(&self) -> Option<SentinelApi> {
        match &self.extra {
            SiemOptions::Sentinel(o) => Some(o.api),
            _ => None,
        }
    }

    /// Splunk HEC with defaults.
    pub fn splunk(endpoint_url: &str, token: impl Into<Secret>) -> Result<SiemConfig, ConfigError> {
        Self::new(SiemType::Splunk, endpoint_url, token)
    }

    /// CrowdStrike LogScale (HEC endpoint) with defaults.
    pub fn crowdstrike(
        endpoint_url: &str,
        token: impl Into<Secret>,
    ) -> Result<SiemConfig, ConfigError> {
        Self::new(SiemType::Crowdstrike, endpoint_url, token)
    }

    /// Sentinel (Data Collector API): `shared_key` is the workspace key, base64.
    pub fn sentinel(
        endpoint_url: &str,
        workspace_id: &str,
        log_type: &str,
        shared_key: impl Into<Secret>,
    ) -> Result<SiemConfig, ConfigError> {
        Self::with_options(
            endpoint_url,
            shared_key,
            SiemOptions::Sentinel(SentinelOptions {
                workspace_id: workspace_id.into(),
                log_type: log_type.into(),
                ..Default::default()
            }),
        )
    }

    /// Sentinel through the Logs Ingestion API: `endpoint_url` is the DCE/DCR ingestion
    /// endpoint, `client_secret` the Entra ID app secret (protocols.md §3.2).
    pub fn sentinel_logs_ingestion(
        endpoint_url: &str,
        tenant_id: &str,
        client_id: &str,
        dcr_id: &str,
        stream: &str,
        client_secret: impl Into<Secret>,
    ) -> Result<SiemConfig, ConfigError> {
        Self::with_options(
            endpoint_url,
            client_secret,
            SiemOptions::Sentinel(SentinelOptions {
                api: SentinelApi::LogsIngestion,
                tenant_id: tenant_id.into(),
                client_id: client_id.into(),
                dcr_id: dcr_id.into(),
                stream: stream.into(),
                ..Default::default()
            }),
        )
    }

    /// ArcSight SmartConnector over HTTP.
    pub fn arcsight(
        endpoint_url: &str,
        smart_connector_id: &str,
        token: impl Into<Secret>,
    ) -> Result<SiemConfig, ConfigError> {
        Self::with_options(
            endpoint_url,
            token,
            SiemOptions::Arcsight(ArcsightOptions {
                smart_connector_id: smart_connector_id.into(),
                ..Default::default()
            }),
        )
    }

    /// Generic CEF; `syslog://host[:port]` selects syslog (UDP unless `options.transport`).
    pub fn cef(
        endpoint_url: &str,
        token: impl Into<Secret>,
        options: CefOptions,
    ) -> Result<SiemConfig, ConfigError> {
        Self::with_options(endpoint_url, token, SiemOptions::Cef(options))
    }
}

impl fmt::Debug for SiemConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SiemConfig")
            .field("siem_type", &self.siem_type)
            .field("endpoint_url", &self.redacted_url())
            .field("auth_token", &self.auth_token)
            .field("extra", &self.extra)
            .field("batch_size", &self.batch_size)
            .field("flush_interval_seconds", &self.flush_interval_seconds)
            .field("retry_count", &self.retry_count)
            .field("timeout_seconds", &self.timeout_seconds)
            .field("enabled", &self.enabled)
            .field("tls", &self.tls)
            .finish()
    }
}

/// `url` fit to show: without user info (`user:password@`) and with the query and fragment
/// replaced by `?…` (a Splunk token can travel as `?token=`).
pub fn redact_url(url: &str) -> String {
    // An `@` past where the authority seems to end may close user info holding a raw `/`,
    // `?` or `#` (a password): show nothing of such a URL (an `@` in a path is rare in a
    // SIEM endpoint, and costs only the display).
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if rest[authority_end..].contains('@') {
            return format!("{scheme}://…");
        }
    }
    let cut = url.find(['?', '#']);
    let base = &url[..cut.unwrap_or(url.len())];
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            format!("{scheme}://{host}{path}")
        }
        None => base.to_string(),
    };
    if cut.is_some() {
        out.push_str("?…");
    }
    out
}

impl SiemConfig {
    /// The endpoint as it may be shown (see [`redact_url`]).
    pub fn redacted_url(&self) -> String {
        redact_url(&self.endpoint_url)
    }
}

/// `splunk https://host:8088/services/collector/event (token ***)`.
impl fmt::Display for SiemConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.redacted_url();
        write!(f, "{} {}", self.siem_type, url)?;
        // CEF has no credential: no "(token ***)" that suggests one.
        if !self.auth_token.expose().is_empty() {
            write!(f, " (token {})", self.auth_token)?;
        }
        if !self.enabled {
            f.write_str(" [disabled]")?;
        }
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct RawSiemConfig {
    siem_type: SiemType,
    endpoint_url: String,
    #[serde(default)]
    auth_token: Secret,
    #[serde(default)]
    extra: serde_json::Value,
    #[serde(default = "d_batch")]
    batch_size: usize,
    #[serde(default = "d_flush")]
    flush_interval_seconds: u64,
    #[serde(default = "d_retry")]
    retry_count: u32,
    #[serde(default = "d_timeout")]
    timeout_seconds: u64,
    #[serde(default = "d_true")]
    enabled: bool,
    #[serde(default)]
    tls: TlsOptions,
}

fn d_batch() -> usize {
    100
}
fn d_flush() -> u64 {
    10
}
fn d_retry() -> u32 {
    3
}
fn d_timeout() -> u64 {
    30
}
fn d_true() -> bool {
    true
}

impl TryFrom<RawSiemConfig> for SiemConfig {
    type Error = String;
    fn try_from(raw: RawSiemConfig) -> Result<SiemConfig, String> {
        let extra = match raw.extra {
            serde_json::Value::Null => serde_json::Value::Object(Default::default()),
            v => v,
        };
        let extra = SiemOptions::from_json(raw.siem_type, extra)
            .map_err(|e| format!("invalid {} options in `extra`: {e}", raw.siem_type))?;
        Ok(SiemConfig {
            siem_type: raw.siem_type,
            endpoint_url: raw.endpoint_url,
            auth_token: raw.auth_token,
            extra,
            batch_size: raw.batch_size,
            flush_interval_seconds: raw.flush_interval_seconds,
            retry_count: raw.retry_count,
            timeout_seconds: raw.timeout_seconds,
            enabled: raw.enabled,
            tls: raw.tls,
        })
    }
}

impl From<SiemConfig> for RawSiemConfig {
    fn from(c: SiemConfig) -> RawSiemConfig {
        RawSiemConfig {
            siem_type: c.siem_type,
            endpoint_url: c.endpoint_url,
            auth_token: c.auth_token,
            extra: c.extra.to_json(),
            batch_size: c.batch_size,
            flush_interval_seconds: c.flush_interval_seconds,
            retry_count: c.retry_count,
            timeout_seconds: c.timeout_seconds,
            enabled: c.enabled,
            tls: c.tls,
        }
    }
}
