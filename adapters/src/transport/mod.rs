//! Transports: how encoded requests reach a peer. HTTP (hyper 1 + rustls) and syslog
//! (UDP, TCP, TLS). No queues, no SIEM knowledge: they move bytes and report errors.

use std::path::PathBuf;
use std::time::Duration;

mod error;
pub mod http;
pub mod syslog;
pub mod tls;

pub use self::error::TransportSetupError;
pub use self::http::HttpTransport;
pub use self::syslog::SyslogTransport;

/// TLS settings shared by HTTP and syslog-over-TLS. Verification is on unless
/// `insecure_skip_verify` is set explicitly.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct TlsOptions {
    /// PEM file of extra CA certificates to trust (a private CA), besides the system roots.
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate chain for mutual TLS (needs `client_key`).
    pub client_cert: Option<PathBuf>,
    /// PEM private key for `client_cert`.
    pub client_key: Option<PathBuf>,
    /// Accept any server certificate. Dangerous; logged as a warning on every start.
    pub insecure_skip_verify: bool,
}

/// Syslog carrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogProtocol {
    Udp,
    Tcp,
    Tls,
}

/// How messages are delimited on a TCP or TLS stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyslogFraming {
    /// `LEN SP MSG` (RFC 6587 3.4.1, mandatory for RFC 5425 TLS). The default.
    OctetCounting,
    /// `MSG LF` (RFC 6587 3.4.2). Messages must not contain LF.
    Newline,
}

/// Where and how a syslog transport sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogTarget {
    pub host: String,
    pub port: u16,
    pub protocol: SyslogProtocol,
    pub framing: SyslogFraming,
    /// Largest UDP datagram ever sent; longer messages are truncated on a UTF-8 boundary.
    pub max_datagram: usize,
    /// Connect + write deadline for one batch.
    pub timeout: Duration,
}
