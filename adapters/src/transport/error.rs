//! Errors raised while *building* a transport (bad configuration), as opposed to
//! [`crate::request::TransportError`], which is about one request failing at run time.
//!
//! Messages name the offending file or setting but never include key material, tokens or
//! file contents.

use std::path::PathBuf;

/// A transport could not be created from its configuration. Permanent until the
/// configuration changes.
#[derive(Debug, thiserror::Error)]
pub enum TransportSetupError {
    /// The `ca_cert` file could not be read or is not valid PEM.
    #[error("cannot read CA certificate file {}: {reason}", path.display())]
    CaCertRead { path: PathBuf, reason: String },
    /// The `ca_cert` file holds no usable certificate.
    #[error("no usable CA certificate in {}", path.display())]
    NoCaCertificates { path: PathBuf },
    /// The `client_cert` file could not be read or is not valid PEM.
    #[error("cannot read client certificate file {}: {reason}", path.display())]
    ClientCertRead { path: PathBuf, reason: String },
    /// The `client_cert` file holds no certificate.
    #[error("no certificate in client certificate file {}", path.display())]
    NoClientCertificates { path: PathBuf },
    /// The `client_key` file could not be read or holds no private key.
    #[error("cannot read a private key from {}: {reason}", path.display())]
    ClientKeyRead { path: PathBuf, reason: String },
    /// `client_cert` without `client_key`.
    #[error("client_cert is set but client_key is missing (mutual TLS needs both)")]
    ClientCertWithoutKey,
    /// `client_key` without `client_cert`.
    #[error("client_key is set but client_cert is missing (mutual TLS needs both)")]
    ClientKeyWithoutCert,
    /// rustls refused the client certificate / key pair (e.g. unsupported key type or a key
    /// that does not match the certificate).
    #[error("invalid client certificate or key: {0}")]
    InvalidClientAuth(String),
    /// Any other failure building the TLS configuration.
    #[error("TLS configuration error: {0}")]
    Tls(String),
    /// A destination setting is unusable (empty host, port 0, unsupported combination, ...).
    #[error("invalid transport target: {0}")]
    InvalidTarget(String),
}
