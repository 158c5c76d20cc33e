//! Typed per-destination options (the `extra` of a [`super::SiemConfig`]).

use serde::{Deserialize, Serialize};

use crate::transport::SyslogFraming;

/// Request body compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Gzip,
    None,
}

/// Default HEC request size limit (uncompressed bytes), as Vector's `max_bytes`.
pub const DEFAULT_HEC_MAX_BYTES: usize = 1_000_000;
/// Default CEF-over-HTTP / ArcSight request size limit (uncompressed bytes).
pub const DEFAULT_CEF_HTTP_MAX_BYTES: usize = 1_000_000;

fn raxe() -> String {
    "raxe".into()
}
fn json_sourcetype() -> String {
    "_json".into()
}
fn hec_max() -> usize {
    DEFAULT_HEC_MAX_BYTES
}
fn cef_max() -> usize {
    DEFAULT_CEF_HTTP_MAX_BYTES
}
fn vendor() -> String {
    "RAXE".into()
}
fn product() -> String {
    "ThreatDetection".into()
}
fn local0() -> u8 {
    16
}
fn datagram() -> usize {
    2048
}

/// Splunk HEC (protocols.md §1, §7.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SplunkOptions {
    /// Target index; `None` = the token's default index.
    pub index: Option<String>,
    #[serde(default = "raxe")]
    pub source: String,
    #[serde(default = "json_sourcetype")]
    pub sourcetype: String,
    /// `host` field; `None` = this machine's hostname.
    pub host: Option<String>,
    pub compression: Compression,
    /// Largest uncompressed body per request; bigger batches are split.
    #[serde(default = "hec_max")]
    pub max_request_bytes: usize,
    /// Indexer acknowledgement (protocols.md §1.6): events leave the queue only once
    /// Splunk says they are indexed. The token must have `useACK` on.
    pub ack: bool,
    /// How often pending ack ids are polled.
    #[serde(default = "ack_interval")]
    pub ack_interval_seconds: u64,
    /// A request whose ack id is still `false` after this long is sent again.
    #[serde(default = "ack_timeout")]
    pub ack_timeout_seconds: u64,
    /// Requests that may wait for their ack at once; workers wait for room beyond that.
    /// It bounds throughput (this many requests per indexing delay) and the requests a
    /// crash sends again.
    /// Written only when not the default, so a file an older version reads (it refuses
    /// unknown fields) stays readable unless the option is used.
    #[serde(
        default = "ack_max_pending",
        skip_serializing_if = "is_default_ack_max_pending"
    )]
    pub ack_max_pending: usize,
    /// The HEC channel GUID, made once at configure time and kept in the config file so
    /// that it survives restarts.
    pub channel: Option<String>,
}

/// Default `ack_interval_seconds` (Splunk's guidance and Vector's default).
pub const DEFAULT_ACK_INTERVAL_SECONDS: u64 = 10;
/// Default `ack_timeout_seconds` (Splunk's "resend after ~5 min").
pub const DEFAULT_ACK_TIMEOUT_SECONDS: u64 = 300;
/// Default `ack_max_pending`: 64 requests of 100 events, 6,400 events a crash may send
/// again, and at most 6,400 events per indexing delay.
pub const DEFAULT_ACK_MAX_PENDING: usize = 64;
fn ack_max_pending() -> usize {
    DEFAULT_ACK_MAX_PENDING
}
fn is_default_ack_max_pending(n: &usize) -> bool {
    *n == DEFAULT_ACK_MAX_PENDING
}
fn ack_interval() -> u64 {
    DEFAULT_ACK_INTERVAL_SECONDS
}
fn ack_timeout() -> u64 {
    DEFAULT_ACK_TIMEOUT_SECONDS
}

impl Default for SplunkOptions {
    fn default() -> Self {
        SplunkOptions {
            index: None,
            source: raxe(),
            sourcetype: json_sourcetype(),
            host: None,
            compression: Compression::Gzip,
            max_request_bytes: DEFAULT_HEC_MAX_BYTES,
            ack: false,
            ack_interval_seconds: DEFAULT_ACK_INTERVAL_SECONDS,
            ack_timeout_seconds: DEFAULT_ACK_TIMEOUT_SECONDS,
            ack_max_pending: DEFAULT_ACK_MAX_PENDING,
            channel: None,
        }
    }
}

/// CrowdStrike Falcon LogScale over its HEC endpoint (protocols.md §2, §7.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CrowdstrikeOptions {
    /// Sent as the HEC `index` (must match the token's repository unless org token).
    pub repository: Option<String>,
    /// Sent as the HEC `sourcetype` (selects the parser when the token has none).
    pub parser: Option<String>,
    #[serde(default = "raxe")]
    pub source: String,
    pub host: Option<String>,
    pub compression: Compression,
    #[serde(default = "hec_max")]
    pub max_request_bytes: usize,
}

impl Default for CrowdstrikeOptions {
    fn default() -> Self {
        CrowdstrikeOptions {
            repository: None,
            parser: None,
            source: raxe(),
            host: None,
            compression: Compression::Gzip,
            max_request_bytes: DEFAULT_HEC_MAX_BYTES,
        }
    }
}

/// Microsoft Sentinel via the HTTP Data Collector API (protocols.md §3.1, §7.4).
/// The shared key is the config's `auth_token` (base64).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SentinelOptions {
    /// Data Collector: required.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub workspace_id: String,
    /// Data Collector: required, `[A-Za-z0-9_]{1,100}`; the table is `<log_type>_CL`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub log_type: String,
    /// Which Azure API (default `data-collector`, so older config files keep their meaning).
    pub api: SentinelApi,
    /// Logs Ingestion (protocols.md §3.2): Entra ID tenant, app (client) id, DCR immutable
    /// id and stream name. The client secret is the config's `auth_token`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tenant_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub client_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub dcr_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stream: String,
    /// Logs Ingestion: token endpoint; `None` = Entra ID v2 for `tenant_id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    /// `None` = the API's default: gzip for Logs Ingestion, none for Data Collector
    /// (which signs the exact body and cannot take gzip).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
}

/// The Azure ingestion API of a Sentinel destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SentinelApi {
    /// HTTP Data Collector API (§3.1): stopped working on 14 September 2026.
    #[default]
    DataCollector,
    /// Logs Ingestion API (§3.2): DCR-based, Entra ID OAuth2.
    LogsIngestion,
}

/// Where the CEF `installation_id` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CefSrcField {
    /// `src=` (CEF types it as an IPv4 address; some parsers complain).
    #[default]
    Src,
    /// `deviceExternalId=`.
    DeviceExternalId,
}

/// ArcSight SmartConnector over HTTP (CEF lines, protocols.md §7.7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArcsightOptions {
    /// Required; sent with every request as `X-ArcSight-Smart-Connector-Id`.
    pub smart_connector_id: String,
    #[serde(default = "vendor")]
    pub device_vendor: String,
    #[serde(default = "product")]
    pub device_product: String,
    pub src_field: CefSrcField,
    #[serde(default = "cef_max")]
    pub max_request_bytes: usize,
}

impl Default for ArcsightOptions {
    fn default() -> Self {
        ArcsightOptions {
            smart_connector_id: String::new(),
            device_vendor: vendor(),
            device_product: product(),
            src_field: CefSrcField::Src,
            max_request_bytes: DEFAULT_CEF_HTTP_MAX_BYTES,
        }
    }
}

/// How CEF travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CefTransport {
    Http,
    Udp,
    Tcp,
}

/// Syslog header flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogFormat {
    #[default]
    Rfc5424,
    Rfc3164,
}

/// Generic CEF over HTTP or syslog (protocols.md §4, §5, §7.5–7.7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CefOptions {
    /// `None`: decided by the URL scheme (`syslog://` → UDP, `https://` → HTTP).
    pub transport: Option<CefTransport>,
    /// Syslog port; `None` = the URL's port, else 514 (UDP) / 6514 (TCP).
    pub port: Option<u16>,
    /// TLS for syslog over TCP (RFC 5425; needs octet counting).
    pub tls: bool,
    /// Syslog facility (0–23), default 16 (local0).
    #[serde(default = "local0")]
    pub facility: u8,
    pub framing: SyslogFramingOption,
    pub syslog_format: SyslogFormat,
    /// Largest UDP datagram (longer messages are truncated by the transport).
    #[serde(default = "datagram")]
    pub max_datagram: usize,
    /// Syslog HOSTNAME; `None` = this machine's hostname.
    pub hostname: Option<String>,
    #[serde(default = "raxe")]
    pub app_name: String,
    #[serde(default = "vendor")]
    pub device_vendor: String,
    #[serde(default = "product")]
    pub device_product: String,
    pub src_field: CefSrcField,
    /// CEF over HTTP: largest uncompressed body per request.
    #[serde(default = "cef_max")]
    pub max_request_bytes: usize,
}

impl Default for CefOptions {
    fn default() -> Self {
        CefOptions {
            transport: None,
            port: None,
            tls: false,
            facility: local0(),
            framing: SyslogFramingOption::default(),
            syslog_format: SyslogFormat::Rfc5424,
            max_datagram: datagram(),
            hostname: None,
            app_name: raxe(),
            device_vendor: vendor(),
            device_product: product(),
            src_field: CefSrcField::Src,
            max_request_bytes: DEFAULT_CEF_HTTP_MAX_BYTES,
        }
    }
}

/// Serde-friendly wrapper of the transport's [`SyslogFraming`] with a default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SyslogFramingOption(pub SyslogFraming);

impl Default for SyslogFramingOption {
    fn default() -> Self {
        SyslogFramingOption(SyslogFraming::OctetCounting)
    }
}

/// Per-type options, one variant per [`super::SiemType`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiemOptions {
    Splunk(SplunkOptions),
    Crowdstrike(CrowdstrikeOptions),
    Sentinel(SentinelOptions),
    Arcsight(ArcsightOptions),
    Cef(CefOptions),
}

impl SiemOptions {
    /// Defaults for a type.
    pub fn default_for(t: super::SiemType) -> SiemOptions {
        use super::SiemType as T;
        match t {
            T::Splunk => SiemOptions::Splunk(Default::default()),
            T::Crowdstrike => SiemOptions::Crowdstrike(Default::default()),
            T::Sentinel => SiemOptions::Sentinel(Default::default()),
            T::Arcsight => SiemOptions::Arcsight(Default::default()),
            T::Cef => SiemOptions::Cef(Default::default()),
        }
    }

    pub fn siem_type(&self) -> super::SiemType {
        use super::SiemType as T;
        match self {
            SiemOptions::Splunk(_) => T::Splunk,
            SiemOptions::Crowdstrike(_) => T::Crowdstrike,
            SiemOptions::Sentinel(_) => T::Sentinel,
            SiemOptions::Arcsight(_) => T::Arcsight,
            SiemOptions::Cef(_) => T::Cef,
        }
    }

    /// The options as a JSON object, for display: [`SiemOptions::to_json`] with the
    /// options a file leaves out at their default too.
    pub fn to_shown_json(&self) -> serde_json::Value {
        let mut v = self.to_json();
        if let SiemOptions::Splunk(o) = self {
            v["ack_max_pending"] = o.ack_max_pending.into();
        }
        v
    }

    /// The options as a JSON object (what `extra` serializes to).
    pub fn to_json(&self) -> serde_json::Value {
        let v = match self {
            SiemOptions::Splunk(o) => serde_json::to_value(o),
            SiemOptions::Crowdstrike(o) => serde_json::to_value(o),
            SiemOptions::Sentinel(o) => serde_json::to_value(o),
            SiemOptions::Arcsight(o) => serde_json::to_value(o),
            SiemOptions::Cef(o) => serde_json::to_value(o),
        };
        v.expect("options serialize")
    }

    /// Options of type `t` from a JSON object (missing keys take their defaults).
    pub fn from_json(
        t: super::SiemType,
        v: serde_json::Value,
    ) -> Result<SiemOptions, serde_json::Error> {
        use super::SiemType as T;
        Ok(match t {
            T::Splunk => SiemOptions::Splunk(serde_json::from_value(v)?),
            T::Crowdstrike => SiemOptions::Crowdstrike(serde_json::from_value(v)?),
            T::Sentinel => SiemOptions::Sentinel(serde_json::from_value(v)?),
            T::Arcsight => SiemOptions::Arcsight(serde_json::from_value(v)?),
            T::Cef => SiemOptions::Cef(serde_json::from_value(v)?),
        })
    }
}
